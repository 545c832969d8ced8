"""Model hyper-parameters, read from GGUF metadata or given as plain numbers.

One :class:`ModelConfig` describes a decoder-only transformer of a supported architecture
(``llama``, ``gemma3``, ``qwen3``). Architecture-specific behaviour (QK norm, extra norms,
activation, embedding scale, Q/K row layout) follows from :class:`ArchTraits`, so a shape-only
model (no file, e.g. Qwen3-8B for timing) is fully described by its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from flexserve.errors import ConfigError, ModelFormatError, UnsupportedArchitectureError


@dataclass(frozen=True)
class ArchTraits:
    """What distinguishes one architecture's block from another's."""

    qk_norm: bool  # RMSNorm over each head of Q and K before RoPE
    sandwich_norms: bool  # extra norms after attention and after the FFN (Gemma)
    activation: str  # "silu" or "gelu_tanh", applied to the gate projection
    scale_embeddings: bool  # multiply token embeddings by sqrt(d_model) (Gemma)
    qk_rows_interleaved: bool  # GGUF stores Q/K rows permuted for interleaved-pair RoPE
    sliding_window_pattern: int  # every n-th layer is global, the rest local; 0 = all global
    rope_base_local: float  # RoPE base of local (sliding-window) layers


ARCH_TRAITS: dict[str, ArchTraits] = {
    "llama": ArchTraits(False, False, "silu", False, True, 0, 0.0),
    "qwen3": ArchTraits(True, False, "silu", False, False, 0, 0.0),
    # Gemma 3: five local layers then one global (llama.cpp and HF agree on the pattern);
    # local RoPE base 10k is not stored in GGUF files (it is fixed by the architecture).
    "gemma3": ArchTraits(True, True, "gelu_tanh", True, False, 6, 10_000.0),
}

ROPE_SCALING_TYPES = ("none", "linear")


def arch_traits(architecture: str) -> ArchTraits:
    traits = ARCH_TRAITS.get(architecture)
    if traits is None:
        supported = ", ".join(sorted(ARCH_TRAITS))
        raise UnsupportedArchitectureError(
            f"architecture {architecture!r} is not supported (supported: {supported})"
        )
    return traits


@dataclass(frozen=True)
class ModelConfig:
    """Shapes and constants of one model. Defaults describe nothing real; set what you need."""

    architecture: str = "llama"
    n_layers: int = 1
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 4
    head_dim: int = 16
    ffn_dim: int = 128
    vocab_size: int = 256
    context_length: int = 2048
    norm_eps: float = 1e-6
    rope_base: float = 10_000.0
    rope_base_local: float | None = None  # None: the architecture's default
    rope_dim: int | None = None  # rotated dims per head; None: all of head_dim
    rope_scaling_type: str = "none"
    rope_scaling_factor: float = 1.0
    sliding_window: int = 0  # tokens a local layer sees (including itself); 0 = none
    sliding_window_pattern: int | None = None  # None: the architecture's default
    attn_scale: float | None = None  # None: 1/sqrt(head_dim)
    tied_embeddings: bool = True
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        arch_traits(self.architecture)
        for key in ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "ffn_dim",
                    "vocab_size", "context_length"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )
        self._check_rope()
        if self.sliding_window < 0 or not self.norm_eps > 0:
            raise ConfigError("sliding_window must be >= 0 and norm_eps > 0")

    def _check_rope(self) -> None:
        if not self.rope_base > 0:
            raise ConfigError(f"rope_base must be positive, got {self.rope_base}")
        if self.rope_dims % 2 or not 0 < self.rope_dims <= self.head_dim:
            raise ConfigError(f"rope_dim must be even and within head_dim, got {self.rope_dims}")
        if self.rope_scaling_type not in ROPE_SCALING_TYPES:
            raise UnsupportedArchitectureError(
                f"RoPE scaling {self.rope_scaling_type!r} is not supported "
                f"(supported: {', '.join(ROPE_SCALING_TYPES)})"
            )
        if not self.rope_scaling_factor > 0:
            raise ConfigError(f"rope_scaling_factor must be positive: {self.rope_scaling_factor}")

    @property
    def traits(self) -> ArchTraits:
        return arch_traits(self.architecture)

    @property
    def rope_dims(self) -> int:
        return self.head_dim if self.rope_dim is None else self.rope_dim

    @property
    def local_rope_base(self) -> float:
        if self.rope_base_local is not None:
            return self.rope_base_local
        return self.traits.rope_base_local or self.rope_base

    @property
    def window_pattern(self) -> int:
        if self.sliding_window_pattern is not None:
            return self.sliding_window_pattern
        return self.traits.sliding_window_pattern

    @property
    def attention_scale(self) -> float:
        return self.attn_scale if self.attn_scale is not None else 1.0 / math.sqrt(self.head_dim)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    def is_local_layer(self, layer: int) -> bool:
        """True if ``layer`` attends through a sliding window (and uses the local RoPE base)."""
        pattern = self.window_pattern
        if self.sliding_window <= 0 or pattern <= 0:
            return False
        return (layer + 1) % pattern != 0

    def layer_window(self, layer: int) -> int:
        """The sliding window of ``layer`` in tokens, or 0 for full attention."""
        return self.sliding_window if self.is_local_layer(layer) else 0

    def layer_rope_base(self, layer: int) -> float:
        return self.local_rope_base if self.is_local_layer(layer) else self.rope_base

    def layer_rope_scale(self, layer: int) -> float:
        """Position divisor of ``layer`` (linear RoPE scaling; Gemma scales global layers only)."""
        if self.rope_scaling_type != "linear":
            return 1.0
        if self.architecture == "gemma3" and self.is_local_layer(layer):
            return 1.0
        return self.rope_scaling_factor

    @property
    def block_params(self) -> int:
        """Parameters of one transformer block (projections and norms)."""
        traits = self.traits
        projections = self.d_model * (2 * self.q_dim + 2 * self.kv_dim + 3 * self.ffn_dim)
        norms = self.d_model * (4 if traits.sandwich_norms else 2)
        return projections + norms + (2 * self.head_dim if traits.qk_norm else 0)

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.d_model

    @property
    def output_params(self) -> int:
        """Final norm, plus the output matrix unless it is tied to the embedding."""
        return self.d_model + (0 if self.tied_embeddings else self.embedding_params)

    @property
    def n_params(self) -> int:
        return self.embedding_params + self.n_layers * self.block_params + self.output_params

    def kv_bytes_per_token(self, bytes_per_value: int = 4) -> int:
        return 2 * self.n_layers * self.kv_dim * bytes_per_value

    @classmethod
    def from_gguf(cls, gguf: Any) -> ModelConfig:
        """Read the config of a parsed :class:`~flexserve.engine.gguf_file.GGUFFile`."""
        return config_from_metadata(gguf.architecture, gguf.metadata, gguf.tensors)


class _Meta:
    """Typed access to ``{arch}.*`` metadata keys with clear errors."""

    def __init__(self, arch: str, metadata: dict[str, Any]) -> None:
        self.arch = arch
        self.metadata = metadata

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.arch}.{key}", default)

    def int(self, key: str, default: int | None = None) -> int:
        value = self.get(key, default)
        if value is None:
            raise ModelFormatError(f"GGUF metadata lacks {self.arch}.{key}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelFormatError(f"GGUF {self.arch}.{key} must be an integer, got {value!r}")
        return value

    def float(self, key: str, default: float | None = None) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelFormatError(f"GGUF {self.arch}.{key} must be a number, got {value!r}")
        return float(value)


def _vocab_size(meta: _Meta, tensors: dict[str, Any]) -> int:
    embed = tensors.get("token_embd.weight")
    if embed is not None:
        return int(embed.shape[0])
    tokens = meta.metadata.get("tokenizer.ggml.tokens")
    return meta.int("vocab_size", len(tokens) if isinstance(tokens, list) else None)


def _rope_scaling(meta: _Meta) -> tuple[str, float]:
    kind = meta.get("rope.scaling.type", "none")
    factor = meta.float("rope.scaling.factor", 1.0)
    if kind == "linear" and factor == 1.0:
        kind = "none"
    return str(kind), factor


def config_from_metadata(
    architecture: str, metadata: dict[str, Any], tensors: dict[str, Any]
) -> ModelConfig:
    """Build a config from GGUF metadata (and tensor shapes, for the vocabulary and tying)."""
    arch_traits(architecture)
    meta = _Meta(architecture, metadata)
    d_model = meta.int("embedding_length")
    n_heads = meta.int("attention.head_count")
    head_dim = meta.int("attention.key_length", d_model // n_heads)
    scaling_type, scaling_factor = _rope_scaling(meta)
    try:
        return ModelConfig(
            architecture=architecture,
            n_layers=meta.int("block_count"),
            d_model=d_model,
            n_heads=n_heads,
            n_kv_heads=meta.int("attention.head_count_kv", n_heads),
            head_dim=head_dim,
            ffn_dim=meta.int("feed_forward_length"),
            vocab_size=_vocab_size(meta, tensors),
            context_length=meta.int("context_length"),
            norm_eps=meta.float("attention.layer_norm_rms_epsilon"),
            rope_base=meta.float("rope.freq_base", 10_000.0),
            rope_dim=meta.int("rope.dimension_count", head_dim),
            rope_scaling_type=scaling_type,
            rope_scaling_factor=scaling_factor,
            sliding_window=meta.int("attention.sliding_window", 0),
            sliding_window_pattern=_optional_int(meta, "attention.sliding_window_pattern"),
            tied_embeddings="output.weight" not in tensors,
            name=str(metadata.get("general.name", "")),
        )
    except ConfigError as exc:
        raise ModelFormatError(f"GGUF hyper-parameters are inconsistent: {exc}") from exc


def _optional_int(meta: _Meta, key: str) -> int | None:
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
