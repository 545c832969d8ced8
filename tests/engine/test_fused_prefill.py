"""The fused prefill block against the torch block it replaces (same int4 format numerics).

Both round the same values to bfloat16 at the same points, so their hidden states, keys and
values agree to float32 rounding (bar rare bfloat16 flips). A wrong RoPE row, KV slot, head
grouping, causal or window mask, or norm moves logits by whole units. Prompts cover a fresh
cache, a continued one (prefix reuse: keys before the rows), both attention paths (C and
torch's) and the Gemma window of 5.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_fused_decode import _QUANTIZED, _models, assert_fused_matches_torch

from flexserve.engine import fused_prefill
from flexserve.engine.model import Transformer
from flexserve.errors import ContextOverflowError

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                                 reason="no C compiler")]
PROMPT = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 5, 8, 1, 7]
SPLIT = 9  # the second chunk starts past the Gemma window of 5


def _prefill(model: Transformer, native: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a 9-token chunk then a 7-token chunk on the same cache, and the cache's keys
    and values of every layer."""
    model.native_fused = native
    cache = model.new_cache(24)
    first = model.forward(PROMPT[:SPLIT], cache)
    second = model.forward(PROMPT[SPLIT:], cache)
    assert cache.length == len(PROMPT)
    kv = torch.stack([torch.stack((k[:, :len(PROMPT)], v[:, :len(PROMPT)]))
                      for k, v in zip(cache.keys, cache.values, strict=True)])
    return torch.cat((first, second)), kv


@pytest.mark.parametrize("c_attention", [True, False], ids=["c-attention", "torch-attention"])
@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma3"])
@pytest.mark.parametrize("quantize", [None, _QUANTIZED], ids=["dense", "int4"])
def test_fused_prefill_equals_the_torch_prefill(arch: str, quantize: dict | None,
                                                c_attention: bool, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused_prefill, "C_ATTENTION_MAX_KEYS", 64 if c_attention else 0)
    model, exact = _models(arch, tmp_path, quantize)
    reference, reference_kv = _prefill(model, native=False)
    assert model._prefill is None  # the torch blocks ran
    fused, fused_kv = _prefill(model, native=True)
    assert model._prefill is not None
    want, _ = _prefill(exact, native=True)
    assert exact._prefill is None  # the exact format always runs the torch blocks
    assert_fused_matches_torch(fused, reference, want, quantized=quantize is not None)
    scale = reference_kv.abs().mean().item()
    assert (fused_kv - reference_kv).abs().mean().item() < 1e-2 * scale


def test_the_streamed_prefill_runs_the_fused_blocks(tmp_path: Path) -> None:
    """The secure pipeline's layer-by-layer prefill goes through ``forward_block``, so it
    takes the fused path too and ends with the logits of a whole forward pass."""
    from flexserve.tee.framework.prefill import StreamedPrefill

    model, _ = _models("llama", tmp_path, _QUANTIZED)
    whole = model.forward(PROMPT, model.new_cache(24), last_only=True)
    streamed = StreamedPrefill(model, PROMPT, capacity_tokens=24)
    for name in model.installed_groups():
        streamed.run_group(name)
    assert model._prefill is not None
    assert streamed.logits is not None and torch.equal(streamed.logits, whole)


def test_a_prefill_past_the_cache_fails_before_writing(tmp_path: Path) -> None:
    model, _ = _models("llama", tmp_path, _QUANTIZED)
    cache = model.new_cache(8)
    model.forward(PROMPT[:6], cache)
    before = cache.keys[0].clone()
    with pytest.raises(ContextOverflowError):
        model.forward_block(0, model.embed(PROMPT[:4]), cache, torch.arange(6, 10))
    assert torch.equal(cache.keys[0], before)
