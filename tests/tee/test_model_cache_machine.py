"""Stateful property test of the Flex-Mem model cache and cooperative reclamation.

Random sequences of requests (models of random layer sizes, each non-resident layer
allocated through ``rsmem_alloc`` and filled with known bytes), normal-world reclaims through
the kernel Flex-Mem manager's shrinker (the real ``rsmem_reclaim`` path), and budget changes.
After every step: the resident bytes never exceed the cap and the cap never exceeds the
budget; every resident frame is the TA's and mapped; the normal world has lent exactly the
resident frames (nothing leaks); resident layers still hold their bytes; every frame given
back was zero before the normal world got it; a KV cache kept, written back by a reclaim and
reused comes back bit-identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from flexserve.soc.constants import FRAME_SIZE_BYTES, MIB
from flexserve.systems.device import boot_device
from flexserve.tee.framework.cache_policy import CachePolicyConfig
from flexserve.tee.framework.kv_store import KvStore
from flexserve.tee.framework.model_cache import ModelCache
from flexserve.tee.sealing import SecureDevice

MODELS = {"a": (5, 3), "b": (3, 6), "c": (8, 2)}  # name -> (layers, frames per layer)
BUDGET_BYTES = 24 * FRAME_SIZE_BYTES


class _Weights:
    """Stands in for the engine's transformer: remembers which groups are installed."""

    def __init__(self) -> None:
        self.installed: set[str] = set()

    def drop_group(self, name: str) -> None:
        self.installed.discard(name)


def _fill(model: str, layer: int, frames: int) -> np.ndarray:
    seed = 1 + ord(model) * 100 + layer
    return np.random.default_rng(seed).integers(1, 255, size=(frames, FRAME_SIZE_BYTES),
                                                dtype=np.uint8)


class CacheMachine(RuleBasedStateMachine):
    @initialize()
    def boot(self) -> None:
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="cache-machine-"))
        self.device = boot_device(root / "flash", SecureDevice.load_or_create(root / "secure"),
                                  dram_bytes=96 * MIB)
        self.services = self.device.ta.services
        self.cache = ModelCache(self.services, CachePolicyConfig(BUDGET_BYTES),
                                regrow_after=2, kv=KvStore(self.services, self.device.files))
        self.kv_expected: dict[str, bytes] = {}
        self.returned_dirty: list[bool] = []
        self.since_reclaim: tuple[int, int] | None = None  # (requests since, bytes left)
        surrender = self.services.surrender_secure

        def spy(allocation):
            pages = surrender(allocation)  # scrubbed: check before the normal world reuses it
            self.returned_dirty.append(
                not self.device.platform.soc.memory.frames_are_zero(allocation.frames))
            return pages

        self.services.surrender_secure = spy  # type: ignore[method-assign]
        self.device.manager.register_reclaimer(self.services.owner, self.cache.reclaim)

    @rule(name=st.sampled_from(sorted(MODELS)), prompt_tokens=st.integers(1, 2048))
    def request(self, name: str, prompt_tokens: int) -> None:
        layers, frames = MODELS[name]
        units = [(f"blk.{i}", frames * FRAME_SIZE_BYTES) for i in range(layers)]
        model = self.cache.checkout(name, _Weights, units)
        loaded = {}
        for i, (layer, size) in enumerate(units):
            if self.cache.is_resident(model, layer):
                continue
            allocation = self.services.alloc_secure(size)
            self.services.port.write_frames(self.services.owner, allocation.frames,
                                            _fill(name, i, frames))
            model.transformer.installed.add(layer)
            loaded[layer] = allocation
        self.cache.checkin(model, loaded, prompt_tokens, restored_bytes=0)
        if self.since_reclaim is not None:  # hysteresis: no regrowth for regrow_after requests
            requests, left = self.since_reclaim
            self.since_reclaim = (requests + 1, left)
            if requests + 1 <= self.cache.regrow_after:
                assert self.cache.resident_bytes <= left

    @rule(name=st.sampled_from(sorted(MODELS)), n_bytes=st.integers(1, 3 * FRAME_SIZE_BYTES),
          seed=st.integers(0, 2**16))
    def keep_kv(self, name: str, n_bytes: int, seed: int) -> None:
        data = np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
        self.cache._keep_kv(name, list(range(n_bytes % 50 + 10)), data)
        if name in self.cache.kv.entries:
            self.kv_expected[name] = data
        else:
            self.kv_expected.pop(name, None)

    @precondition(lambda self: self.kv_expected)
    @rule(data=st.data())
    def reuse_kv(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.kv_expected)))
        entry = self.cache.kv.entries[name]
        assert self.cache.kv.take(entry) == self.kv_expected.pop(name)  # bit-identical
        assert name not in self.cache.kv.entries  # consumed by the request

    @precondition(lambda self: self.cache.resident_frames)
    @rule(pages=st.integers(1, 30))
    def normal_world_reclaims(self, pages: int) -> None:
        lent = self.device.manager.lent_pages()
        freed = self.device.manager.shrink(pages)
        assert self.device.manager.lent_pages() == lent - freed
        assert freed >= min(pages, lent) or self.cache.resident_frames == 0
        assert self.cache.cap_bytes <= self.cache.resident_bytes  # re-planned smaller
        self.since_reclaim = (0, self.cache.resident_bytes)

    @invariant()
    def budgets_hold(self) -> None:
        assert self.cache.resident_bytes <= self.cache.cap_bytes <= BUDGET_BYTES

    @invariant()
    def every_resident_frame_is_owned_and_nothing_leaks(self) -> None:
        port, owner = self.services.port, self.services.owner
        held = [a.frames for m in self.cache.models.values() for a in m.layers.values()]
        held += [e.allocation.frames for e in self.cache.kv.entries.values() if e.resident]
        frames = np.concatenate(held) if held else np.zeros(0, dtype=np.int64)
        assert np.unique(frames).size == frames.size  # one owner per frame
        assert np.array_equal(np.sort(port.owned_frames(owner)), np.sort(frames))
        assert self.device.manager.lent_pages() == frames.size

    @invariant()
    def resident_layers_keep_their_bytes_and_tensors(self) -> None:
        port, owner = self.services.port, self.services.owner
        for model in self.cache.models.values():
            assert model.transformer.installed == set(model.layers)
            for layer, allocation in model.layers.items():
                i = int(layer.split(".")[1])
                expected = _fill(model.name, i, int(allocation.frames.size))
                assert np.array_equal(port.read_frames(owner, allocation.frames), expected)

    @invariant()
    def given_back_frames_were_zero(self) -> None:
        assert not any(self.returned_dirty)


TestCacheMachine = CacheMachine.TestCase
TestCacheMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
