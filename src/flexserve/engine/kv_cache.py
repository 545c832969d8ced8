"""A preallocated key/value cache, one slab per layer.

Keys and values are stored as ``(n_kv_heads, capacity, head_dim)`` float32 tensors allocated
once. ``length`` counts committed positions; a forward pass writes positions
``length .. length+n-1`` into every layer, then commits them. ``truncate`` drops a suffix so a
shared prefix can be reused.
"""

from __future__ import annotations

import torch

from flexserve.engine.config import ModelConfig
from flexserve.errors import ConfigError, ContextOverflowError


class KVCache:
    """Per-layer key/value slabs with one shared committed length."""

    def __init__(
        self, config: ModelConfig, capacity_tokens: int, dtype: torch.dtype = torch.float32
    ) -> None:
        if not 0 < capacity_tokens <= config.context_length:
            raise ConfigError(
                f"KV cache capacity must be in 1..{config.context_length} tokens, "
                f"got {capacity_tokens}"
            )
        self.capacity_tokens = capacity_tokens
        self.n_layers = config.n_layers
        shape = (config.n_kv_heads, capacity_tokens, config.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype) for _ in range(config.n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype) for _ in range(config.n_layers)]
        self.length = 0

    @property
    def free_tokens(self) -> int:
        return self.capacity_tokens - self.length

    @property
    def n_bytes(self) -> int:
        per_slab = self.keys[0].numel() * self.keys[0].element_size()
        return 2 * self.n_layers * per_slab

    def check_room(self, n_tokens: int) -> None:
        """Raise :class:`ContextOverflowError` unless ``n_tokens`` more positions fit."""
        if n_tokens > self.free_tokens:
            raise ContextOverflowError(
                f"{n_tokens} more tokens do not fit the KV cache: {self.length} of "
                f"{self.capacity_tokens} positions are used"
            )

    def write(
        self, layer: int, start: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``(n_kv_heads, n, head_dim)`` keys/values at ``start`` in ``layer``.

        Returns views of all keys and values of that layer up to ``start + n``.
        """
        end = start + keys.shape[1]
        if start < 0 or end > self.capacity_tokens:
            raise ContextOverflowError(
                f"positions {start}..{end - 1} exceed the KV cache of {self.capacity_tokens}"
            )
        self.keys[layer].narrow(1, start, end - start).copy_(keys)
        self.values[layer].narrow(1, start, end - start).copy_(values)
        return self.keys[layer][:, :end], self.values[layer][:, :end]

    def commit(self, length: int) -> None:
        """Mark positions ``0 .. length-1`` as valid in every layer."""
        if not 0 <= length <= self.capacity_tokens:
            raise ContextOverflowError(f"length {length} exceeds {self.capacity_tokens}")
        self.length = length

    def truncate(self, length: int) -> None:
        """Forget every position from ``length`` on (keeps a prefix for reuse)."""
        if not 0 <= length <= self.length:
            raise ConfigError(f"cannot truncate a cache of {self.length} tokens to {length}")
        self.length = length

    def reset(self) -> None:
        self.length = 0

    # ----- serialization (for keeping a conversation's cache between requests) -----
    def export_bytes(self, n_tokens: int | None = None) -> bytes:
        """The first ``n_tokens`` committed positions (default: all) of every layer's keys
        then values, as contiguous raw bytes of the cache's dtype."""
        n = self.length if n_tokens is None else n_tokens
        if not 0 < n <= self.length:
            raise ConfigError(f"cannot export {n} of {self.length} committed positions")
        parts = [t[:, :n].contiguous().reshape(-1) for pair in zip(self.keys, self.values,
                                                                   strict=True) for t in pair]
        return torch.cat(parts).numpy().tobytes()

    def exported_size(self, n_tokens: int) -> int:
        per_token = self.keys[0].shape[0] * self.keys[0].shape[2] * self.keys[0].element_size()
        return 2 * self.n_layers * n_tokens * per_token

    def import_bytes(self, data: bytes | memoryview, n_tokens: int) -> None:
        """Load what :meth:`export_bytes` wrote for ``n_tokens`` positions and commit them."""
        if not 0 < n_tokens <= self.capacity_tokens or len(data) != self.exported_size(n_tokens):
            raise ConfigError("KV bytes do not match this cache's shape and token count")
        flat = torch.frombuffer(bytearray(data), dtype=self.keys[0].dtype)
        per_slab = self.keys[0].shape[0] * n_tokens * self.keys[0].shape[2]
        slabs = [t for pair in zip(self.keys, self.values, strict=True) for t in pair]
        for i, slab in enumerate(slabs):
            piece = flat[i * per_slab:(i + 1) * per_slab]
            slab[:, :n_tokens] = piece.reshape(slab.shape[0], n_tokens, slab.shape[2])
        self.commit(n_tokens)
