"""Shape-only descriptions of the paper's models, and per-layer byte accounting.

The paper evaluates Qwen3 0.6B/1.7B/8B, Llama 3.2 3B and Llama 3.1 8B in INT8. Their weights
are not available here, but their shapes are public, and shapes are all the timing-only mode
needs: per-layer parameter counts and the bytes each layer occupies in Q8_0. A shape-only model
is an engine :class:`ModelConfig` with no weights, so parameter counting has one definition.

Sources (the models' public ``config.json`` files on their Hugging Face model cards):
- Qwen/Qwen3-0.6B, Qwen/Qwen3-1.7B, Qwen/Qwen3-8B
- meta-llama/Llama-3.2-3B-Instruct, meta-llama/Llama-3.1-8B-Instruct
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.engine.config import ModelConfig

# Q8_0 stores blocks of 32 weights as one fp16 scale plus 32 int8 values (ggml's block_q8_0).
Q8_0_BLOCK_WEIGHTS = 32
Q8_0_BLOCK_BYTES = 34
# ggml keeps 1-D tensors (norm weights) in F32.
F32_BYTES = 4


@dataclass(frozen=True)
class LayerSize:
    """One loadable unit of a model: the embedding, a block, or the output head."""

    name: str
    matrix_params: int
    vector_params: int

    @property
    def params(self) -> int:
        return self.matrix_params + self.vector_params

    @property
    def q8_0_bytes(self) -> int:
        blocks = -(-self.matrix_params // Q8_0_BLOCK_WEIGHTS)
        return blocks * Q8_0_BLOCK_BYTES + self.vector_params * F32_BYTES


def block_size(config: ModelConfig, index: int) -> LayerSize:
    """Block ``index``: its projection matrices, and its norm vectors (kept in F32)."""
    matrix = config.d_model * (2 * config.q_dim + 2 * config.kv_dim + 3 * config.ffn_dim)
    return LayerSize(f"blk.{index}", matrix, config.block_params - matrix)


def layer_sizes(config: ModelConfig) -> list[LayerSize]:
    """Every loadable unit in load order: embed, blocks, output (norm plus untied head)."""
    embed = LayerSize("embed", config.embedding_params, 0)
    blocks = [block_size(config, i) for i in range(config.n_layers)]
    output = LayerSize("output", config.output_params - config.d_model, config.d_model)
    return [embed, *blocks, output]


def _qwen3(name: str, n_layers: int, d_model: int, n_heads: int, ffn_dim: int,
           tied: bool) -> ModelConfig:
    return ModelConfig(architecture="qwen3", name=name, n_layers=n_layers, d_model=d_model,
                       n_heads=n_heads, n_kv_heads=8, head_dim=128, ffn_dim=ffn_dim,
                       vocab_size=151936, context_length=40960, rope_base=1_000_000.0,
                       tied_embeddings=tied)


def _llama3(name: str, n_layers: int, d_model: int, n_heads: int, ffn_dim: int,
            tied: bool) -> ModelConfig:
    # Llama 3.x use "llama3" RoPE frequency scaling, which only matters past 8k tokens and is
    # irrelevant to shape-only timing; the engine refuses it for real weights.
    return ModelConfig(architecture="llama", name=name, n_layers=n_layers, d_model=d_model,
                       n_heads=n_heads, n_kv_heads=8, head_dim=128, ffn_dim=ffn_dim,
                       vocab_size=128256, context_length=131072, rope_base=500_000.0,
                       tied_embeddings=tied)


QWEN3_0_6B = _qwen3("Qwen3-0.6B", 28, 1024, 16, 3072, tied=True)
QWEN3_1_7B = _qwen3("Qwen3-1.7B", 28, 2048, 16, 6144, tied=True)
QWEN3_8B = _qwen3("Qwen3-8B", 36, 4096, 32, 12288, tied=False)
LLAMA3_2_3B = _llama3("Llama-3.2-3B-Instruct", 28, 3072, 24, 8192, tied=True)
LLAMA3_1_8B = _llama3("Llama-3.1-8B-Instruct", 32, 4096, 32, 14336, tied=False)

PAPER_MODELS: dict[str, ModelConfig] = {
    "qwen3-0.6b": QWEN3_0_6B,
    "qwen3-1.7b": QWEN3_1_7B,
    "qwen3-8b": QWEN3_8B,
    "llama3.2-3b": LLAMA3_2_3B,
    "llama3.1-8b": LLAMA3_1_8B,
}
