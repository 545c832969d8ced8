"""A small synthetic GGUF for sealing tests (llama shapes, F32 weights)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def write_tiny_gguf(path: Path, seed: int = 0, hidden: int = 64, n_layers: int = 2) -> Path:
    """A llama-shaped F32 model; with hidden=64 each block spans ~36 chunks of 4 KiB."""
    rng = np.random.default_rng(seed)
    ffn, vocab, kv = 2 * hidden, 256, hidden // 2
    shapes = {"attn_norm": (hidden,), "attn_q": (hidden, hidden), "attn_k": (kv, hidden),
              "attn_v": (kv, hidden), "attn_output": (hidden, hidden), "ffn_norm": (hidden,),
              "ffn_gate": (ffn, hidden), "ffn_up": (ffn, hidden), "ffn_down": (hidden, ffn)}
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(n_layers)
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-6)
    tensors = {"token_embd.weight": (vocab, hidden), "output_norm.weight": (hidden,),
               "output.weight": (vocab, hidden)}
    for i in range(n_layers):
        tensors.update({f"blk.{i}.{name}.weight": shape for name, shape in shapes.items()})
    for name, shape in tensors.items():
        writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
