"""The preallocated KV cache: writes, commits, truncation and overflow."""

from __future__ import annotations

import pytest
import torch

from flexserve.engine.config import ModelConfig
from flexserve.engine.kv_cache import KVCache
from flexserve.errors import ConfigError, ContextOverflowError

CONFIG = ModelConfig(n_layers=2, n_kv_heads=2, n_heads=4, head_dim=8, context_length=64)


def kv(n: int, value: float) -> torch.Tensor:
    return torch.full((2, n, 8), value)


def test_preallocates_and_writes_in_place() -> None:
    cache = KVCache(CONFIG, 16)
    slab = cache.keys[1]
    assert cache.n_bytes == 2 * 2 * (2 * 16 * 8) * 4
    keys, values = cache.write(1, 0, kv(3, 1.0), kv(3, 2.0))
    assert keys.shape == (2, 3, 8) and values.shape == (2, 3, 8)
    assert cache.keys[1] is slab and keys.data_ptr() == slab.data_ptr()
    cache.commit(3)
    keys, _ = cache.write(1, 3, kv(1, 5.0), kv(1, 6.0))
    assert keys.shape[1] == 4 and keys[0, 3, 0] == 5.0 and keys[0, 0, 0] == 1.0
    assert cache.length == 3 and cache.free_tokens == 13


def test_overflow_and_capacity_limits() -> None:
    cache = KVCache(CONFIG, 4)
    cache.check_room(4)
    with pytest.raises(ContextOverflowError):
        cache.check_room(5)
    with pytest.raises(ContextOverflowError):
        cache.write(0, 2, kv(3, 0.0), kv(3, 0.0))
    with pytest.raises(ConfigError):
        KVCache(CONFIG, 65)  # more than the model's context


def test_truncate_keeps_a_prefix() -> None:
    cache = KVCache(CONFIG, 8)
    cache.write(0, 0, kv(6, 1.0), kv(6, 1.0))
    cache.commit(6)
    cache.truncate(2)
    assert cache.length == 2 and cache.free_tokens == 6
    with pytest.raises(ConfigError):
        cache.truncate(3)
    cache.reset()
    assert cache.length == 0
