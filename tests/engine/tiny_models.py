"""Tiny random-weight models: a transformers reference and the same weights as a GGUF file.

The GGUF side follows llama.cpp's converter conventions (facts about the format, written here
independently): HF tensor names map to GGUF names; for ``llama`` the Q/K rows of each head are
permuted to the interleaved-pair RoPE layout; Gemma norm weights are stored as ``1 + w``.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import torch

VOCAB = 96
HIDDEN = 64
FFN = 96
LAYERS = 3
GEMMA_LAYERS = 6  # Gemma 3 pattern: five local layers, then a global one
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 32  # deliberately != HIDDEN / HEADS
CONTEXT = 128
GEMMA_WINDOW = 5

_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
}
_FFN_NORM = {  # the norm before the FFN, and Gemma's extra ones
    "llama": {"post_attention_layernorm": "ffn_norm"},
    "qwen3": {"post_attention_layernorm": "ffn_norm"},
    "gemma3": {"post_attention_layernorm": "post_attention_norm",
               "pre_feedforward_layernorm": "ffn_norm",
               "post_feedforward_layernorm": "post_ffw_norm"},
}


def n_layers(arch: str) -> int:
    return GEMMA_LAYERS if arch == "gemma3" else LAYERS


def hf_model(arch: str, seed: int = 0) -> torch.nn.Module:
    """A random transformers model of ``arch`` whose norms are random too."""
    torch.manual_seed(seed)
    model = _hf_class(arch)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(torch.rand_like(param) * 0.5 + (0.0 if arch == "gemma3" else 0.75))
            else:
                param.normal_(0.0, 0.08)
    return model.eval()


def _hf_class(arch: str) -> torch.nn.Module:
    import transformers as tf

    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN,
                  num_hidden_layers=n_layers(arch), num_attention_heads=HEADS,
                  num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
                  max_position_embeddings=CONTEXT, rms_norm_eps=1e-6)
    if arch == "llama":
        config = tf.LlamaConfig(**common, tie_word_embeddings=False,
                                rope_parameters={"rope_type": "default", "rope_theta": 5000.0})
        return tf.LlamaForCausalLM(config)
    if arch == "qwen3":
        config = tf.Qwen3Config(**common, tie_word_embeddings=False,
                                rope_parameters={"rope_type": "default", "rope_theta": 1e6})
        return tf.Qwen3ForCausalLM(config)
    config = tf.Gemma3TextConfig(
        **common, query_pre_attn_scalar=HEAD_DIM, sliding_window=GEMMA_WINDOW,
        layer_types=["sliding_attention"] * 5 + ["full_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 1e6}},
    )
    return tf.Gemma3ForCausalLM(config)


def interleave_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's Q/K permutation: half-split RoPE rows -> interleaved pairs, per head."""
    n_rows, n_in = weight.shape
    return weight.reshape(n_heads, 2, n_rows // n_heads // 2, n_in).swapaxes(1, 2).reshape(
        n_rows, n_in)


def gguf_tensors(arch: str, model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The model's weights under GGUF names and conventions."""
    names = {**_LAYER_NAMES, **_FFN_NORM[arch]}
    out: dict[str, np.ndarray] = {}
    for hf_name, param in model.state_dict().items():
        value = param.detach().float().numpy().copy()
        if arch == "gemma3" and hf_name.endswith("norm.weight"):
            value = value + 1.0
        out[_gguf_name(hf_name, names)] = value
    if arch == "llama":
        for i in range(LAYERS):
            out[f"blk.{i}.attn_q.weight"] = interleave_rows(out[f"blk.{i}.attn_q.weight"], HEADS)
            out[f"blk.{i}.attn_k.weight"] = interleave_rows(out[f"blk.{i}.attn_k.weight"],
                                                            KV_HEADS)
    if arch == "gemma3":
        out.pop("output.weight", None)  # tied
    return out


def _gguf_name(hf_name: str, names: dict[str, str]) -> str:
    if hf_name == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf_name == "model.norm.weight":
        return "output_norm.weight"
    if hf_name == "lm_head.weight":
        return "output.weight"
    _, _, index, rest = hf_name.split(".", 3)
    return f"blk.{index}.{names[rest.removesuffix('.weight')]}.weight"


def write_gguf(
    arch: str, model: torch.nn.Module, path: Path, quantize: dict[str, int] | None = None
) -> Path:
    """Write ``model`` as a GGUF file; tensors named in ``quantize`` use that GGML type."""
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(n_layers(arch))
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base({"llama": 5000.0, "qwen3": 1e6, "gemma3": 1e6}[arch])
    if arch == "gemma3":
        writer.add_sliding_window(GEMMA_WINDOW)
    for name, value in gguf_tensors(arch, model).items():
        qtype = (quantize or {}).get(name)
        if qtype is None:
            writer.add_tensor(name, value)
        else:
            packed = gguf.quants.quantize(value, gguf.GGMLQuantizationType(qtype))
            writer.add_tensor(name, packed, raw_dtype=gguf.GGMLQuantizationType(qtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
