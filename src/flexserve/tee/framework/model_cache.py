"""Model weights kept in Flex-Mem across requests, and cooperative reclamation.

Mechanism only; *what* to keep is :mod:`.cache_policy`. After each request the cache
re-plans with the recent invocation history and keeps, per chosen model, the planned prefix
of its layers (the Flex-Mem frames and the engine tensors built from them); everything else
is scrubbed and handed back. A resident layer skips allocation, loading and decryption on
the next request of its model.

``rsmem_reclaim`` (the normal world under memory pressure) calls :meth:`ModelCache.reclaim`,
which gives up whole layers in this order (docs/cache.md says why):

1. layers of models the current plan does not keep (last layers first);
2. historical KV caches of idle models, encrypted and written back to flash (kept for the
   conversation's next turn, which restores and verifies them);
3. then, model by model from the lowest budget weight, the **last** layers first (the first
   layers are what lets the next request compute while the rest streams in);
4. never a layer or KV cache of a request in flight (the request keeps making progress; the
   normal world gets less than it asked for, as a shrinker may).

Weight frames are only scrubbed: their ciphertext is on flash. After a reclaim the budget is
capped at what is left and grows back one step per request only after ``regrow_after``
requests without reclaim (hysteresis: frames do not thrash between the worlds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from flexserve.engine.model import Transformer
from flexserve.soc.constants import FRAME_SIZE_BYTES, frame_rounded_bytes
from flexserve.tee.framework.cache_policy import (
    CachePolicyConfig,
    ModelDemand,
    UsageHistory,
    budgets,
    plan,
    weight,
)
from flexserve.tee.framework.kv_store import KvStore
from flexserve.tee.trusted_os import SecureAllocation, TaServices


@dataclass
class CacheCounters:
    layer_hits: int = 0
    layer_misses: int = 0
    bytes_restored_from_flash: int = 0
    bytes_written_back: int = 0
    reclaim_requests: int = 0
    bytes_reclaimed: int = 0
    #: (event number, resident frames) after every check-in and reclaim (plottable)
    resident_frames: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class ResidentModel:
    """One model's resident layers and the transformer holding their tensors.

    ``layer_names`` and ``layer_bytes`` (page-rounded) are every layer's, in load order.
    """

    name: str
    transformer: Transformer
    layer_names: tuple[str, ...]
    layer_bytes: tuple[int, ...]
    layers: dict[str, SecureAllocation] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return sum(int(a.frames.size) for a in self.layers.values())


class ModelCache:
    """Resident layers of several models within a byte budget; reclaimable."""

    def __init__(self, services: TaServices, config: CachePolicyConfig, *,
                 window: int = 20, regrow_after: int = 4, regrow_step: float = 0.25,
                 kv: KvStore | None = None) -> None:
        self.services, self.config, self.kv = services, config, kv
        self.history = UsageHistory(window)
        self.models: dict[str, ResidentModel] = {}
        self.in_flight: set[str] = set()
        self.counters = CacheCounters()
        self.cap_bytes = config.budget_bytes
        self.regrow_after, self.regrow_step = regrow_after, regrow_step
        self._quiet_requests = 0
        self._events = 0

    # ----- queries -----
    @property
    def resident_bytes(self) -> int:
        return self.resident_frames * FRAME_SIZE_BYTES

    @property
    def resident_frames(self) -> int:
        return self.weight_frames + (self.kv.resident_frames if self.kv is not None else 0)

    @property
    def weight_frames(self) -> int:
        return sum(m.frames for m in self.models.values())

    def checkout(self, name: str, new_transformer: Callable[[], Transformer],
                 layers: Sequence[tuple[str, int]]) -> ResidentModel:
        """The model's resident state for a request (pinned until :meth:`checkin`);
        ``layers`` are (name, plaintext bytes) of every layer in load order."""
        model = self.models.get(name)
        if model is None:
            names = tuple(n for n, _ in layers)
            sizes = tuple(frame_rounded_bytes(b) for _, b in layers)
            model = ResidentModel(name, new_transformer(), names, sizes)
            self.models[name] = model
        self.in_flight.add(name)
        return model

    def is_resident(self, model: ResidentModel, layer: str) -> bool:
        hit = layer in model.layers
        if hit:
            self.counters.layer_hits += 1
        else:
            self.counters.layer_misses += 1
        return hit

    # ----- after a request -----
    def checkin(self, model: ResidentModel, loaded: dict[str, SecureAllocation],
                prompt_tokens: int, restored_bytes: int,
                kv: tuple[str, Sequence[int], bytes] | None = None) -> None:
        """Keep what the new plan wants of ``loaded``; release the rest of everything; keep
        the request's KV cache (``kv``: its owner key, token ids and bytes) if it fits."""
        self.in_flight.discard(model.name)
        self.history.record(model.name, prompt_tokens)
        self.counters.bytes_restored_from_flash += restored_bytes
        self._regrow()
        model.layers.update(loaded)
        kept = self._plan()
        for other in list(self.models.values()):
            self._trim(other, kept.get(other.name, 0))
        if self.kv is not None and kv is not None:
            self._keep_kv(kv[0], kv[1], kv[2], model.name)
        self._note()

    def _keep_kv(self, key: str, token_ids: Sequence[int], data: bytes,
                 model: str | None = None) -> None:
        assert self.kv is not None
        self.kv.drop(key)
        room = self.cap_bytes - self.resident_bytes
        if frame_rounded_bytes(len(data)) <= room:
            self.kv.save(key, token_ids, data, model)

    def drop_request(self, model: ResidentModel, loaded: dict[str, SecureAllocation]) -> None:
        """A failed request: release what it loaded; the resident layers stay."""
        self.in_flight.discard(model.name)
        for name, allocation in loaded.items():
            model.transformer.drop_group(name)
            self.services.free_secure(allocation)
        self._forget_if_empty(model)

    # ----- rsmem_reclaim -----
    def reclaim(self, size_bytes: int) -> np.ndarray:
        """Give up resident layers worth at least ``size_bytes`` if possible; returns the
        scrubbed and unmapped IPA pages (the normal world releases them)."""
        self.counters.reclaim_requests += 1
        pages: list[np.ndarray] = []
        freed = 0
        for give_up in self._victims():
            if freed >= size_bytes:
                break
            pages.append(give_up())
            freed += int(pages[-1].size) * FRAME_SIZE_BYTES
        for model in list(self.models.values()):
            self._forget_if_empty(model)
        self.counters.bytes_reclaimed += freed
        self.cap_bytes = min(self.cap_bytes, self.resident_bytes)
        self._quiet_requests = 0
        self._note()
        return np.concatenate(pages) if pages else np.zeros(0, dtype=np.int64)

    def release_all(self) -> None:
        for model in list(self.models.values()):
            self._trim(model, 0)
        if self.kv is not None:
            for name in list(self.kv.entries):
                self.kv.drop(name)

    # ----- internals -----
    def _demands(self) -> list[ModelDemand]:
        return [ModelDemand(m.name, m.layer_bytes, self.history.rate(m.name),
                            self.history.typical_prompt_tokens(m.name))
                for m in self.models.values()]

    def _effective(self) -> CachePolicyConfig:
        """The policy for weights: the cap less what historical KV caches hold."""
        kv_bytes = self.kv.resident_frames * FRAME_SIZE_BYTES if self.kv is not None else 0
        return CachePolicyConfig(max(0, self.cap_bytes - kv_bytes), self.config.rate_threshold,
                                 self.config.fallback_top_n, self.config.prompt_scale_tokens)

    def _plan(self) -> dict[str, int]:
        return plan(self._demands(), self._effective())

    def _trim(self, model: ResidentModel, keep_layers: int) -> None:
        keep = set(model.layer_names[:keep_layers])
        for name in [n for n in model.layers if n not in keep]:
            model.transformer.drop_group(name)
            self.services.free_secure(model.layers.pop(name))
        self._forget_if_empty(model)

    def _forget_if_empty(self, model: ResidentModel) -> None:
        if not model.layers and model.name not in self.in_flight:
            self.models.pop(model.name, None)

    def _victims(self) -> Iterator[Callable[[], np.ndarray]]:
        """Give-up actions in reclaim order (module docstring); each returns IPA pages."""
        demands = {d.name: d for d in self._demands()}
        planned = budgets(list(demands.values()), self._effective())
        idle = [m for m in self.models.values() if m.name not in self.in_flight]
        order = sorted(idle, key=lambda m: (m.name in planned,
                                            weight(demands[m.name], self.config), m.name))
        unplanned = [m for m in order if m.name not in planned]
        yield from self._layer_victims(unplanned)
        if self.kv is not None:
            for entry in list(self.kv.entries.values()):
                if entry.resident and entry.model not in self.in_flight:
                    yield lambda entry=entry: self._write_back(entry)
        yield from self._layer_victims([m for m in order if m.name in planned])

    def _layer_victims(self, models: list[ResidentModel]) -> Iterator[Callable[[], np.ndarray]]:
        for model in models:
            for layer in reversed(model.layer_names):
                if layer in model.layers:
                    yield lambda model=model, layer=layer: self._give_up_layer(model, layer)

    def _give_up_layer(self, model: ResidentModel, layer: str) -> np.ndarray:
        allocation = model.layers.pop(layer)
        model.transformer.drop_group(layer)
        return self.services.surrender_secure(allocation)

    def _write_back(self, entry) -> np.ndarray:
        assert self.kv is not None
        before = self.kv.bytes_written_back
        pages = self.kv.write_back(entry)
        self.counters.bytes_written_back += self.kv.bytes_written_back - before
        return pages

    def _regrow(self) -> None:
        self._quiet_requests += 1
        if self.cap_bytes < self.config.budget_bytes and \
                self._quiet_requests > self.regrow_after:
            step = int(self.config.budget_bytes * self.regrow_step)
            self.cap_bytes = min(self.config.budget_bytes, self.cap_bytes + step)

    def _note(self) -> None:
        self._events += 1
        self.counters.resident_frames.append((self._events, self.resident_frames))
