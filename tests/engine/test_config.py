"""Model configs from GGUF metadata and from plain numbers."""

from __future__ import annotations

import pytest

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.errors import ConfigError, UnsupportedArchitectureError


def test_smollm2_config(smollm2_gguf: GGUFFile) -> None:
    c = ModelConfig.from_gguf(smollm2_gguf)
    assert (c.architecture, c.n_layers, c.d_model) == ("llama", 30, 576)
    assert (c.n_heads, c.n_kv_heads) == (9, 3)
    assert (c.head_dim, c.ffn_dim, c.vocab_size, c.context_length) == (64, 1536, 49152, 8192)
    assert c.rope_base == 100_000.0 and c.tied_embeddings
    assert c.traits.qk_rows_interleaved and not c.traits.qk_norm
    assert not any(c.is_local_layer(i) for i in range(30))


def test_gemma3_config(gemma3_gguf: GGUFFile) -> None:
    c = ModelConfig.from_gguf(gemma3_gguf)
    assert (c.architecture, c.n_layers, c.d_model) == ("gemma3", 18, 640)
    assert (c.n_heads, c.n_kv_heads) == (4, 1)
    assert (c.head_dim, c.ffn_dim, c.vocab_size, c.sliding_window) == (256, 2048, 262144, 512)
    assert [i for i in range(18) if not c.is_local_layer(i)] == [5, 11, 17]
    assert c.layer_rope_base(0) == 10_000.0 and c.layer_rope_base(5) == 1_000_000.0
    assert c.traits.scale_embeddings and c.traits.sandwich_norms
    assert c.traits.activation == "gelu_tanh"
    assert c.attention_scale == pytest.approx(1 / 16)


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_parameter_counts_match_the_file(model: str, request: pytest.FixtureRequest) -> None:
    from flexserve.engine.layers import layer_groups

    gguf_file = request.getfixturevalue(f"{model}_gguf")
    c = ModelConfig.from_gguf(gguf_file)
    groups = layer_groups(gguf_file)
    assert groups[0].n_params == c.embedding_params
    assert all(g.n_params == c.block_params for g in groups[1:-1])
    assert groups[-1].n_params == c.output_params
    assert sum(g.n_params for g in groups) == c.n_params


def test_shape_only_config_from_numbers() -> None:
    c = ModelConfig(architecture="qwen3", n_layers=36, d_model=4096, n_heads=32, n_kv_heads=8,
                    head_dim=128, ffn_dim=12288, vocab_size=151936, context_length=40960,
                    rope_base=1e6, tied_embeddings=False)
    assert c.q_dim == 4096 and c.kv_dim == 1024
    assert c.kv_bytes_per_token(2) == 2 * 36 * 1024 * 2
    assert c.traits.qk_norm and not c.traits.qk_rows_interleaved
    assert c.n_params == pytest.approx(8.2e9, rel=0.02)  # Qwen3-8B, untied: ~8.2B parameters


@pytest.mark.parametrize(
    "bad",
    [{"n_layers": 0}, {"d_model": -1}, {"n_heads": 6, "n_kv_heads": 4}, {"rope_base": 0.0},
     {"rope_dim": 7}, {"norm_eps": 0.0}, {"n_layers": True}, {"sliding_window": -1}],
)
def test_invalid_numbers(bad: dict) -> None:
    with pytest.raises(ConfigError):
        ModelConfig(**bad)


def test_unknown_architecture_and_rope_scaling() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="phi9"):
        ModelConfig(architecture="phi9")
    with pytest.raises(UnsupportedArchitectureError, match="yarn"):
        ModelConfig(rope_scaling_type="yarn")
