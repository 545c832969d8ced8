"""Shape-only specs must reproduce the public parameter counts of the paper's models."""

import pytest

from flexserve.catalog.shapes import PAPER_MODELS, LayerSize, layer_sizes

# Published totals (model cards): Qwen3-0.6B 0.6B (0.44B non-embedding), Qwen3-1.7B 1.7B
# (1.4B non-embedding), Qwen3-8B 8.2B (6.95B non-embedding), Llama 3.2 3B 3.21B,
# Llama 3.1 8B 8.03B.
PUBLISHED_PARAMS = {
    "qwen3-0.6b": 0.596e9,
    "qwen3-1.7b": 1.72e9,
    "qwen3-8b": 8.19e9,
    "llama3.2-3b": 3.21e9,
    "llama3.1-8b": 8.03e9,
}


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_total_params_match_published(name: str) -> None:
    total = sum(layer.params for layer in layer_sizes(PAPER_MODELS[name]))
    assert total == pytest.approx(PUBLISHED_PARAMS[name], rel=0.01)


def test_llama31_8b_q8_0_size_matches_known_file() -> None:
    # Meta-Llama-3.1-8B-Instruct-Q8_0.gguf is about 8.54 GB (8,540,000,000 bytes, rounded).
    size_bytes = sum(layer.q8_0_bytes for layer in layer_sizes(PAPER_MODELS["llama3.1-8b"]))
    assert size_bytes == pytest.approx(8.54e9, rel=0.005)


def test_layer_order_and_names() -> None:
    layers = layer_sizes(PAPER_MODELS["qwen3-0.6b"])
    assert layers[0].name == "embed"
    assert layers[-1].name == "output"
    assert [layer.name for layer in layers[1:-1]] == [f"blk.{i}" for i in range(28)]


def test_q8_0_bytes_round_up_to_whole_blocks() -> None:
    assert LayerSize("x", 33, 0).q8_0_bytes == 2 * 34
    assert LayerSize("x", 32, 1).q8_0_bytes == 34 + 4
