"""The fused C decode step against the torch step it replaces (same int4 format numerics).

Both paths round the same values to bfloat16 at the same points and compute the rest in float32,
so their logits agree to float32 rounding (a rare bfloat16 rounding flip moves a few logits by
about 1e-3 on these tiny models). A wrong RoPE pair, KV slot, head grouping, window or norm
moves logits by whole units.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models
import torch

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layers import layer_groups
from flexserve.engine.loader import build_transformer
from flexserve.engine.model import Transformer
from flexserve.engine.native import build
from flexserve.engine.native.build import load_decode_ops

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(load_decode_ops() is None, reason="no C compiler")]
PROMPT = [3, 14, 15, 92, 65, 35, 89]
STEPS = [79, 32, 38, 46, 26, 5, 8, 1]  # past the Gemma window of 5


def _model(arch: str, tmp_path: Path, quantize: dict[str, int] | None = None) -> Transformer:
    hf = tiny_models.hf_model(arch)
    gguf = GGUFFile.open(tiny_models.write_gguf(arch, hf, tmp_path / f"{arch}.gguf", quantize))
    return build_transformer(gguf, ModelConfig.from_gguf(gguf), layer_groups(gguf),
                             weight_format="int4")


def _decode_logits(model: Transformer, native: bool) -> torch.Tensor:
    model.native_decode = native
    cache = model.new_cache(32)
    model.forward(PROMPT, cache)
    logits = torch.stack([model.forward([t], cache)[-1] for t in STEPS])
    assert cache.length == len(PROMPT) + len(STEPS)
    return logits


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma3"])
def test_fused_step_equals_the_torch_step(arch: str, tmp_path: Path) -> None:
    model = _model(arch, tmp_path)
    reference = _decode_logits(model, native=False)
    fused = _decode_logits(model, native=True)
    assert model._fused is not None
    assert (fused - reference).abs().max().item() < 2e-2
    assert (fused - reference).abs().mean().item() < 2e-3
    assert torch.equal(fused.argmax(-1), reference.argmax(-1))


def test_disabled_or_missing_native_ops_fall_back_to_torch(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model("llama", tmp_path)
    reference = _decode_logits(model, native=False)
    assert model._fused is None  # the torch step ran
    monkeypatch.setattr("flexserve.engine.model.load_decode_ops", lambda: None)
    assert torch.equal(_decode_logits(model, native=True), reference)
    assert model._fused is None and model.native_decode is False


def test_the_library_is_built_into_the_cache_and_reused(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = build.library_path(tmp_path)
    assert target.parent == tmp_path / "native" and not target.exists()
    build.compile_library(target, "cc")
    assert target.exists() and list(target.parent.iterdir()) == [target]  # no temporary left
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    assert build.library_path() == target
    build.load_decode_ops.cache_clear()
    try:
        assert build.load_decode_ops() is not None
        monkeypatch.setenv(build.DISABLE_ENV, "0")
        build.load_decode_ops.cache_clear()
        assert build.load_decode_ops() is None
    finally:
        build.load_decode_ops.cache_clear()


@pytest.mark.slow
def test_fused_decode_of_smollm2_stays_close_to_float32(smollm2_path: Path) -> None:
    """Teacher-forced decode steps (fused, int4) against the exact float32 forward pass."""
    from flexserve.engine.loader import load_model

    exact, fast = load_model(smollm2_path, weight_format="float32"), load_model(smollm2_path)
    ids = exact.tokenizer.encode("The history of the Roman Empire began with a small city on")
    want = exact.transformer.forward(ids, exact.transformer.new_cache(len(ids)))[8:]
    cache = fast.transformer.new_cache(len(ids))
    fast.transformer.forward(ids[:8], cache)
    got = torch.stack([fast.transformer.forward([t], cache)[-1] for t in ids[8:]])
    assert fast.transformer._fused is not None
    assert (got - want).abs().mean().item() < 0.4
    assert (got.argmax(-1) == want.argmax(-1)).float().mean().item() >= 0.9
