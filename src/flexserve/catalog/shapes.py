"""Shape-only descriptions of the paper's models, and per-layer byte accounting.

The paper evaluates Qwen3 0.6B/1.7B/8B, Llama 3.2 3B and Llama 3.1 8B in INT8. Their weights
are not available here, but their shapes are public, and shapes are all the timing-only mode
needs: per-layer parameter counts and the bytes each layer occupies in Q8_0.

Sources (the models' public ``config.json`` files on their Hugging Face model cards):
- Qwen/Qwen3-0.6B, Qwen/Qwen3-1.7B, Qwen/Qwen3-8B
- meta-llama/Llama-3.2-3B-Instruct, meta-llama/Llama-3.1-8B-Instruct
"""

from __future__ import annotations

from dataclasses import dataclass

# Q8_0 stores blocks of 32 weights as one fp16 scale plus 32 int8 values (ggml's block_q8_0).
Q8_0_BLOCK_WEIGHTS = 32
Q8_0_BLOCK_BYTES = 34
# ggml keeps 1-D tensors (norm weights) in F32.
F32_BYTES = 4


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a decoder-only transformer, enough to size and time it."""

    architecture: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_dim: int
    vocab_size: int
    context_length: int
    tied_embeddings: bool
    qk_norm: bool = False

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> int:
        """KV-cache bytes one token adds across all layers (fp16 K and V by default)."""
        return 2 * self.n_layers * self.kv_dim * bytes_per_value


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


def block_size(shape: ModelShape, index: int) -> LayerSize:
    """Parameters of transformer block ``index``: attention, FFN and their norms."""
    d = shape.d_model
    attention = d * shape.q_dim + 2 * d * shape.kv_dim + shape.q_dim * d
    ffn = 3 * d * shape.ffn_dim  # gate, up, down
    norms = 2 * d + (2 * shape.head_dim if shape.qk_norm else 0)
    return LayerSize(f"blk.{index}", attention + ffn, norms)


def layer_sizes(shape: ModelShape) -> list[LayerSize]:
    """Every loadable unit in load order: embed, blocks, output (norm plus untied head)."""
    embed = LayerSize("embed", shape.vocab_size * shape.d_model, 0)
    blocks = [block_size(shape, i) for i in range(shape.n_layers)]
    head_params = 0 if shape.tied_embeddings else shape.vocab_size * shape.d_model
    output = LayerSize("output", head_params, shape.d_model)
    return [embed, *blocks, output]


QWEN3_0_6B = ModelShape("qwen3", 28, 1024, 16, 8, 128, 3072, 151936, 40960, True, qk_norm=True)
QWEN3_1_7B = ModelShape("qwen3", 28, 2048, 16, 8, 128, 6144, 151936, 40960, True, qk_norm=True)
QWEN3_8B = ModelShape("qwen3", 36, 4096, 32, 8, 128, 12288, 151936, 40960, False, qk_norm=True)
LLAMA3_2_3B = ModelShape("llama", 28, 3072, 24, 8, 128, 8192, 128256, 131072, True)
LLAMA3_1_8B = ModelShape("llama", 32, 4096, 32, 8, 128, 14336, 128256, 131072, False)

PAPER_MODELS: dict[str, ModelShape] = {
    "qwen3-0.6b": QWEN3_0_6B,
    "qwen3-1.7b": QWEN3_1_7B,
    "qwen3-8b": QWEN3_8B,
    "llama3.2-3b": LLAMA3_2_3B,
    "llama3.1-8b": LLAMA3_1_8B,
}
