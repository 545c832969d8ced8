"""The layer-by-layer Transformer API, prefix reuse, and the loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models
import torch

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layers import group_bytes, layer_groups, load_group
from flexserve.engine.loader import build_transformer, load_model
from flexserve.engine.model import Transformer, attention_mask
from flexserve.errors import ConfigError, ContextOverflowError, ModelFormatError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
IDS = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26]


@pytest.fixture
def gemma_file(tmp_path: Path) -> GGUFFile:
    hf = tiny_models.hf_model("gemma3")
    return GGUFFile.open(tiny_models.write_gguf("gemma3", hf, tmp_path / "g.gguf"))


def full_model(gguf_file: GGUFFile) -> Transformer:
    return build_transformer(gguf_file, ModelConfig.from_gguf(gguf_file), layer_groups(gguf_file))


def test_streaming_groups_one_at_a_time_equals_forward(gemma_file: GGUFFile) -> None:
    """Install each group only while it runs, as the secure pipeline does."""
    expected = full_model(gemma_file).forward(IDS, Transformer(ModelConfig.from_gguf(gemma_file))
                                              .new_cache(16))
    groups = {g.name: g for g in layer_groups(gemma_file)}
    model = Transformer(ModelConfig.from_gguf(gemma_file))
    cache = model.new_cache(16)

    def install(name: str) -> None:
        model.install_group(name, load_group(groups[name], group_bytes(gemma_file, groups[name])))

    install("embed")
    hidden = model.embed(IDS)
    positions = torch.arange(len(IDS))
    for i in range(model.config.n_layers):
        install(f"blk.{i}")
        assert model.installed_groups() == ["embed", f"blk.{i}"]
        hidden = model.forward_block(i, hidden, cache, positions)
        model.drop_group(f"blk.{i}")
    install("output")
    assert model.head_needs_embedding  # Gemma ties the output to the embedding
    assert torch.equal(model.head(hidden), expected)


def test_missing_groups_are_reported(gemma_file: GGUFFile) -> None:
    model = Transformer(ModelConfig.from_gguf(gemma_file))
    with pytest.raises(ConfigError, match="embed"):
        model.embed(IDS)
    with pytest.raises(ConfigError, match=r"blk\.0"):
        model.forward_block(0, torch.zeros(1, 64), model.new_cache(4), torch.arange(1))
    with pytest.raises(ConfigError, match="no layer group"):
        model.install_group("blk.99", {})


def test_wrong_or_missing_tensors_are_refused(gemma_file: GGUFFile) -> None:
    model = Transformer(ModelConfig.from_gguf(gemma_file))
    group = layer_groups(gemma_file)[1]
    weights = load_group(group, group_bytes(gemma_file, group))
    broken = dict(weights)
    broken["blk.0.attn_q.weight"] = broken["blk.0.attn_q.weight"][:-1]
    with pytest.raises(ModelFormatError, match="shape"):
        model.install_group("blk.0", broken)
    del broken["blk.0.attn_q.weight"]
    with pytest.raises(ModelFormatError, match="missing"):
        model.install_group("blk.0", broken)
    with pytest.raises(ModelFormatError, match="unexpected"):
        model.install_group("blk.0", {**weights, "blk.0.attn_q.bias": torch.zeros(128)})


def test_prefix_reuse_after_truncate(gemma_file: GGUFFile) -> None:
    model = full_model(gemma_file)
    fresh = model.forward([*IDS[:5], 7, 8, 9], model.new_cache(16))
    cache = model.new_cache(16)
    model.forward(IDS, cache)
    cache.truncate(5)
    reused = model.forward([7, 8, 9], cache)
    assert torch.allclose(reused, fresh[5:], atol=1e-5)


def test_forward_overflow_and_bad_ids(gemma_file: GGUFFile) -> None:
    model = full_model(gemma_file)
    cache = model.new_cache(8)
    with pytest.raises(ContextOverflowError):
        model.forward(IDS, cache)
    assert cache.length == 0
    with pytest.raises(ConfigError, match="out of range"):
        model.forward([tiny_models.VOCAB], cache)


def test_attention_mask_window() -> None:
    mask = attention_mask(torch.arange(4, 7), 7, window_tokens=3)
    assert mask is not None
    assert mask.int().tolist() == [[0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1, 0],
                                   [0, 0, 0, 0, 1, 1, 1]]
    assert attention_mask(torch.tensor([6]), 7, window_tokens=0) is None  # decode: sees all


def test_load_model_reports_progress(smollm2_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    loaded = load_model(smollm2_path, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 32) for i in range(1, 33)]
    assert loaded.config.architecture == "llama" and loaded.path == smollm2_path
    assert loaded.transformer.installed_groups()[0] == "embed"
    assert len(loaded.transformer.installed_groups()) == 32
    assert 2 in loaded.tokenizer.stop_token_ids  # <|im_end|>
