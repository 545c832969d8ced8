"""Normal-world cost of cooperative reclamation: how long ``rsmem_reclaim`` takes to return
N MiB of cached weights, measured on the real mechanisms and priced on the device profile.

A fresh emulated device fills a Flex-Mem cache with weight layers (real frames holding
bytes), then the normal world's Flex-Mem manager asks for N MiB back as a shrinker does
under pressure. The secure side scrubs and unmaps the victims, the monitor re-inserts their
stage-2 entries (FLEXMEM_RELEASE), the pages go back to the buddy allocator. Each record is
priced with the profile (``docs/timing-model.md``: FLEXMEM_RELEASE basis for the monitor).
Write-back of KV caches needs the profile's missing encrypt and flash-write parameters and is
not priced here (docs/cache.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flexserve.soc.constants import FRAME_SIZE_BYTES, MIB
from flexserve.soc.work import WorkRecord
from flexserve.systems.device import boot_device
from flexserve.tee.framework.cache_policy import CachePolicyConfig
from flexserve.tee.framework.model_cache import ModelCache
from flexserve.tee.sealing import SecureDevice
from flexserve.timing import costs
from flexserve.timing.profile import DeviceProfile

LAYER_BYTES = 4 * MIB
RECLAIM_MIB = (16, 64, 256, 1024)


@dataclass(frozen=True)
class ReclaimCost:
    asked_mib: int
    returned_mib: float
    layers: int
    device_s: float

    @property
    def mib_per_s(self) -> float:
        return self.returned_mib / self.device_s


class _Weights:
    def drop_group(self, name: str) -> None:
        pass


def _filled_cache(total_bytes: int, root: Path):
    dram = total_bytes + 256 * MIB
    device = boot_device(root / "flash", SecureDevice.load_or_create(root / "secure"),
                         dram_bytes=-(-dram // (64 * MIB)) * 64 * MIB)
    services = device.ta.services
    cache = ModelCache(services, CachePolicyConfig(total_bytes))
    n = total_bytes // LAYER_BYTES
    units = [(f"blk.{i}", LAYER_BYTES) for i in range(n)]
    model = cache.checkout("m", _Weights, units)  # type: ignore[arg-type]
    block = np.full((LAYER_BYTES // FRAME_SIZE_BYTES, FRAME_SIZE_BYTES), 0xA5, dtype=np.uint8)
    loaded = {}
    for name, size in units:
        allocation = services.alloc_secure(size)
        services.port.write_frames(services.owner, allocation.frames, block)
        loaded[name] = allocation
    cache.checkin(model, loaded, prompt_tokens=64, restored_bytes=0)
    device.manager.register_reclaimer(services.owner, cache.reclaim)
    return device, cache


def measure(asked_mib: int, profile: DeviceProfile) -> ReclaimCost:
    """Reclaim ``asked_mib`` from a cache holding twice as much; priced device seconds."""
    with tempfile.TemporaryDirectory(prefix="reclaim-") as tmp:
        device, cache = _filled_cache(2 * asked_mib * MIB, Path(tmp))
        sources = {"kernel": lambda: device.kernel.work, "monitor": lambda: device.manager.work,
                   "secure": lambda: device.platform.secure.port.work}
        before = {k: f().copy() for k, f in sources.items()}
        freed_pages = device.manager.shrink(asked_mib * MIB // FRAME_SIZE_BYTES)
        work = {k: f() - before[k] for k, f in sources.items()}
        layers = (2 * asked_mib * MIB - cache.weight_frames * FRAME_SIZE_BYTES) // LAYER_BYTES
    return ReclaimCost(asked_mib, freed_pages * FRAME_SIZE_BYTES / MIB, int(layers),
                       _priced_s(work, profile))


def _priced_s(work: dict[str, WorkRecord], profile: DeviceProfile) -> float:
    """One core's seconds: the reclaim handler runs its steps one after another."""
    kernel = costs.price(work["kernel"], profile)
    secure = costs.price(work["secure"], profile)
    monitor = costs.price(work["monitor"], profile, basis=costs.Basis.FLEXMEM_RELEASE)
    return sum(t.cpu_s + t.crypto_s + t.monitor_s for t in (kernel, secure, monitor))


def reclaim_costs(profile: DeviceProfile, sizes_mib: Sequence[int] = RECLAIM_MIB
                  ) -> list[ReclaimCost]:
    return [measure(n, profile) for n in sizes_mib]
