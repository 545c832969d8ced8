"""Llama, Qwen3 and Gemma 3 blocks against transformers, on tiny random-weight models.

Each model is written as a GGUF file (converter conventions in ``tiny_models``), loaded by our
engine, and compared with the transformers model holding the same float32 weights. Prompts are
longer than Gemma's tiny sliding window, so local attention is exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_models
import torch

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layers import layer_groups
from flexserve.engine.loader import build_transformer
from flexserve.engine.model import Transformer

# Same float32 weights on both sides; only summation order differs (fused Q/K/V, grouped
# attention). Measured max |diff|: 1.3e-6 (llama), 1.2e-6 (qwen3), 4.6e-6 (gemma3) on logits up
# to ~2.9. 1e-4 leaves a 20x margin, while any layout mistake (RoPE pairing, norm offset, window)
# moves logits by more than 1e-2 (see test_wrong_rope_layout_is_detected).
TOLERANCE = 1e-4
pytestmark = pytest.mark.usefixtures("one_torch_thread")
ARCHS = ["llama", "qwen3", "gemma3"]


def our_model(path: Path) -> Transformer:
    gguf_file = GGUFFile.open(path)
    return build_transformer(gguf_file, ModelConfig.from_gguf(gguf_file), layer_groups(gguf_file),
                             weight_format="float32")


def reference_logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


@pytest.fixture(params=ARCHS)
def pair(request, tmp_path: Path) -> tuple[str, torch.nn.Module, Transformer]:
    arch = request.param
    hf = tiny_models.hf_model(arch)
    return arch, hf, our_model(tiny_models.write_gguf(arch, hf, tmp_path / f"{arch}.gguf"))


def test_config_read_from_the_file(pair) -> None:
    arch, _, ours = pair
    c = ours.config
    n_layers = tiny_models.n_layers(arch)
    assert (c.architecture, c.n_layers, c.d_model, c.head_dim) == (arch, n_layers, 64, 32)
    assert (c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab_size) == (4, 2, 96, 96)
    assert c.tied_embeddings == (arch == "gemma3")
    if arch == "gemma3":
        assert [c.layer_window(i) for i in range(6)] == [5, 5, 5, 5, 5, 0]
        assert [c.layer_rope_base(i) for i in (0, 5)] == [10_000.0, 1e6]


def test_logits_match_transformers(pair) -> None:
    _, hf, ours = pair
    ids = np.random.default_rng(7).integers(0, tiny_models.VOCAB, 40).tolist()
    expected = reference_logits(hf, ids)
    got = ours.forward(ids, ours.new_cache(64))
    diff = (got - expected).abs().max().item()
    assert diff < TOLERANCE, diff
    assert expected.abs().max().item() > 0.5  # the comparison is not of near-zero values


def test_incremental_decode_matches_full_prefill(pair) -> None:
    _, hf, ours = pair
    ids = np.random.default_rng(8).integers(0, tiny_models.VOCAB, 20).tolist()
    expected = reference_logits(hf, ids)
    cache = ours.new_cache(32)
    first = ours.forward(ids[:12], cache)
    rest = torch.cat([ours.forward([t], cache) for t in ids[12:]])
    assert (torch.cat([first, rest]) - expected).abs().max().item() < TOLERANCE


def test_quantized_tensors_match_their_dequantized_reference(tmp_path: Path) -> None:
    """Q8_0 / Q4_1 weights in the file equal the reference holding the decoded values."""
    hf = tiny_models.hf_model("llama", seed=3)
    quantize = {"blk.0.attn_q.weight": 8, "blk.1.ffn_up.weight": 3, "token_embd.weight": 8}
    path = tiny_models.write_gguf("llama", hf, tmp_path / "q.gguf", quantize)
    ours = our_model(path)
    # Give the reference the decoded values (un-permuting Q back to the HF layout).
    import gguf

    names = {"blk.0.attn_q.weight": "model.layers.0.self_attn.q_proj.weight",
             "blk.1.ffn_up.weight": "model.layers.1.mlp.up_proj.weight",
             "token_embd.weight": "model.embed_tokens.weight"}
    tensors = tiny_models.gguf_tensors("llama", hf)
    with torch.no_grad():
        for name, type_id in quantize.items():
            qtype = gguf.GGMLQuantizationType(type_id)
            decoded = gguf.quants.dequantize(gguf.quants.quantize(tensors[name], qtype), qtype)
            if name.endswith("attn_q.weight"):
                decoded = _uninterleave(decoded, tiny_models.HEADS)
            hf.get_parameter(names[name]).copy_(torch.from_numpy(decoded))
    ids = list(range(1, 30))
    diff = (ours.forward(ids, ours.new_cache(32)) - reference_logits(hf, ids)).abs().max()
    assert diff < TOLERANCE


def _uninterleave(weight: np.ndarray, n_heads: int) -> np.ndarray:
    n_rows, n_in = weight.shape
    return weight.reshape(n_heads, n_rows // n_heads // 2, 2, n_in).swapaxes(1, 2).reshape(
        n_rows, n_in)


def test_wrong_rope_layout_is_detected(tmp_path: Path) -> None:
    """The tolerance discriminates: reading llama Q/K without un-permuting fails it."""
    hf = tiny_models.hf_model("llama")
    path = tiny_models.write_gguf("llama", hf, tmp_path / "l.gguf")
    ids = list(range(2, 30))
    expected = reference_logits(hf, ids)
    good = our_model(path)
    assert (good.forward(ids, good.new_cache(32)) - expected).abs().max().item() < TOLERANCE
    wrong = _llama_without_unpermute(GGUFFile.open(path))
    assert (wrong.forward(ids, wrong.new_cache(32)) - expected).abs().max().item() > 1e-2


def _llama_without_unpermute(gguf_file: GGUFFile) -> Transformer:
    from flexserve.engine import model as model_module

    original = model_module.interleaved_row_order
    model_module.interleaved_row_order = lambda n_rows, n_heads: torch.arange(n_rows)
    try:
        config = ModelConfig.from_gguf(gguf_file)
        return build_transformer(gguf_file, config, layer_groups(gguf_file),
                                 weight_format="float32")
    finally:
        model_module.interleaved_row_order = original
