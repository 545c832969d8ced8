"""A tiny servable GGUF: llama shapes, Q8_0 matrices, and a byte-level BPE tokenizer."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from flexserve.engine.tokenizer_bpe import byte_alphabet

HIDDEN = 64
FFN = 128
LAYERS = 2
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "he ll", "hell o"]


def _tokens() -> tuple[list[str], list[int]]:
    merged = ["he", "ll", "hell", "hello"]
    tokens = SPECIALS + list(byte_alphabet()) + merged
    types = [3] * len(SPECIALS) + [1] * (256 + len(merged))  # CONTROL, NORMAL
    return tokens, types


def _add_tokenizer(writer: gguf.GGUFWriter) -> int:
    tokens, types = _tokens()
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    return len(tokens)


def _tensors(vocab: int, rng: np.random.Generator) -> dict[str, tuple[int, ...]]:
    kv = HIDDEN // 2
    block = {"attn_norm": (HIDDEN,), "attn_q": (HIDDEN, HIDDEN), "attn_k": (kv, HIDDEN),
             "attn_v": (kv, HIDDEN), "attn_output": (HIDDEN, HIDDEN), "ffn_norm": (HIDDEN,),
             "ffn_gate": (FFN, HIDDEN), "ffn_up": (FFN, HIDDEN), "ffn_down": (HIDDEN, FFN)}
    shapes = {"token_embd.weight": (vocab, HIDDEN), "output_norm.weight": (HIDDEN,)}
    for i in range(LAYERS):
        shapes.update({f"blk.{i}.{name}.weight": shape for name, shape in block.items()})
    return shapes


def write_servable_gguf(path: Path, seed: int = 0, arch: str = "llama") -> Path:
    """Write the model to ``path``: 1-D tensors in F32, matrices in Q8_0."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(LAYERS)
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    vocab = _add_tokenizer(writer)
    for name, shape in _tensors(vocab, rng).items():
        value = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if len(shape) == 1:
            writer.add_tensor(name, value + 1.0)
        else:
            packed = gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, packed, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
