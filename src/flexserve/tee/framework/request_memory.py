"""Where a request's layers live, and the Flex-NPU held while it computes.

:class:`ColdMemory` (no cache): the request's layers are in its own pool and are scrubbed and
handed back when it ends. :class:`CachedMemory`: resident layers are reused and what the
request loads is offered to the cache at check-in (docs/cache.md). Either way a request ends
exactly once: :meth:`done` (finished or cancelled: the cache may keep what it loaded and the
KV cache of its tokens) or :meth:`failed` (an error: what it loaded is released).
"""

from __future__ import annotations

from typing import Any

from flexserve.engine.model import Transformer
from flexserve.tee.framework.memory import FlexMemPool, SecurePool
from flexserve.tee.framework.model_cache import ModelCache, ResidentModel
from flexserve.tee.framework.trace import RequestTrace


class ColdMemory:
    """No cache: the request's layers live in its own pool and go when it ends."""

    def __init__(self, pool: SecurePool, transformer: Transformer) -> None:
        self.pool, self.transformer = pool, transformer

    def is_resident(self, layer: str) -> bool:
        return False

    def prefix(self, model: str, prompt_ids: list[int], trace: RequestTrace) -> None:
        return None

    def done(self, prompt_tokens: int, trace: RequestTrace,
             kv: tuple[list[int], bytes] | None = None) -> None:
        self.pool.release_all()

    def failed(self) -> None:
        self.pool.release_all()


class CachedMemory:
    """Resident layers are reused; what the request loads is offered to the cache."""

    def __init__(self, cache: ModelCache, resident: ResidentModel, pool: FlexMemPool,
                 kv_key: str | None) -> None:
        """``kv_key``: whose kept KV caches this request may reuse and extend; None: none."""
        self.cache, self.resident, self.pool, self.kv_key = cache, resident, pool, kv_key
        self.transformer = resident.transformer

    def is_resident(self, layer: str) -> bool:
        return self.cache.is_resident(self.resident, layer)

    def prefix(self, model: str, prompt_ids: list[int],
               trace: RequestTrace) -> tuple[tuple[bytes, int], int] | None:
        """A kept KV cache whose tokens start the prompt: (its bytes and tokens, reused)."""
        kv = self.cache.kv
        if kv is None or self.kv_key is None:
            return None
        found = kv.match(self.kv_key, prompt_ids)
        if found is None:
            return None
        entry, reused = found
        if not entry.resident:
            trace.kv_restored_bytes = entry.n_bytes + 16  # ciphertext and tag, read back
        trace.reused_prompt_tokens = reused
        stored = len(entry.token_ids)
        return (kv.take(entry), stored), reused

    def done(self, prompt_tokens: int, trace: RequestTrace,
             kv: tuple[list[int], bytes] | None = None) -> None:
        restored = sum(layer.ciphertext_bytes for layer in trace.layers if not layer.resident)
        self.cache.checkin(self.resident, self.pool.take_all(), prompt_tokens, restored,
                           (self.kv_key, *kv) if kv is not None and self.kv_key else None)

    def failed(self) -> None:
        self.cache.drop_request(self.resident, self.pool.take_all())


RequestMemory = ColdMemory | CachedMemory


class NpuHold:
    """The Flex-NPU in secure mode for this TA while a request computes.

    A request takes it for the compute of one TA invocation and gives it back before the
    invocation returns, so between the steps of a stream the normal world has its NPU (and
    another model's stream can take it)."""

    def __init__(self, services: Any, enabled: bool) -> None:
        self.services, self.enabled, self.held = services, enabled, False

    def acquire(self, trace: RequestTrace) -> None:
        if self.enabled and not self.held:
            record = self.services.port.npu_acquire(self.services.owner)
            trace.npu_mode_switches += max(1, record.npu_mode_switches)
            self.held = True

    def release(self, trace: RequestTrace) -> None:
        if self.held:
            record = self.services.port.npu_release(self.services.owner)
            trace.npu_mode_switches += max(1, record.npu_mode_switches)
            self.held = False
