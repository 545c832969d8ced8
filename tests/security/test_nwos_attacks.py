"""A compromised normal-world kernel misusing its own memory manager against Flex-Mem.

The kernel's allocator, Flex-Mem manager and file service are attacker code here: they
can lie in their bookkeeping, but every access still goes through the stage-2 table, the
SMMU and the monitor, so the victim's frames stay out of reach.
"""

from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import DMAFault, SMCError, TranslationFault
from flexserve.monitor.platform import Platform
from flexserve.nwos.boot import kernel_for
from flexserve.nwos.flexmem import FlexMemManager
from flexserve.nwos.kernel import KernelConfig
from flexserve.nwos.page import PAGE_SIZE_BYTES, PageKind
from flexserve.nwos.watermarks import Watermarks

OWNER = 7
SECRET = b"model-weights: top secret bytes!"


@pytest.fixture
def lent(platform: Platform) -> tuple[FlexMemManager, np.ndarray]:
    kernel = kernel_for(platform.normal, KernelConfig(total_pages=1,
                                                      watermarks=Watermarks(8, 16, 32)))
    manager = FlexMemManager(kernel, platform.normal)
    ipas = manager.rsmem_alloc(OWNER, 16 * PAGE_SIZE_BYTES)
    port = platform.secure.port
    frames = port.frames_at_ipas(OWNER, ipas)
    port.map_frames(OWNER, frames)
    for frame in frames.tolist():
        port.write(OWNER, frame, 0, SECRET)
    return manager, ipas


def test_kernel_recycling_lent_pages_gets_nothing(platform, lent, invariants) -> None:
    manager, ipas = lent
    kernel = manager.kernel
    kernel.free(ipas)  # the allocator "forgets" the loan, bypassing the manager
    app = kernel.spawn_app("spy")
    got = kernel.alloc(app.app_id, PageKind.ANON, kernel.buddy.free_pages() - 40)
    reused = np.intersect1d(got, ipas)
    assert reused.size == ipas.size  # the allocator handed them out again...
    for ipa in reused[:4].tolist():  # ...but the pages are not there for the OS
        with pytest.raises(TranslationFault):
            platform.normal.cpu.read(ipa * PAGE_SIZE_BYTES, len(SECRET))
        with pytest.raises(DMAFault):
            platform.normal.generic_dma.read(ipa * PAGE_SIZE_BYTES, len(SECRET))
    invariants()


def test_release_of_pages_the_ta_still_maps_is_refused(platform, lent, invariants) -> None:
    manager, ipas = lent
    with pytest.raises(SMCError):
        manager.rsmem_free(OWNER, ipas[:4])
    assert manager.lent_pages(OWNER) == ipas.size  # bookkeeping unchanged
    invariants()


def test_release_under_wrong_owner_is_refused(platform, lent, invariants) -> None:
    _manager, ipas = lent
    port = platform.secure.port
    frames = port.frames_at_ipas(OWNER, ipas[:2])
    port.unmap_frames(OWNER, frames)
    with pytest.raises(SMCError):
        platform.normal.flexmem_release(OWNER + 1, ipas[:2])
    invariants()


def test_reclaimed_pages_come_back_without_the_secret(platform, lent, invariants) -> None:
    manager, ipas = lent
    port = platform.secure.port

    def lazy_reclaim(size_bytes: int) -> np.ndarray:
        frames = port.frames_at_ipas(OWNER, ipas[:8])
        port.unmap_frames(OWNER, frames)  # deliberately no scrub: the monitor must zero
        return port.ipas_of(OWNER, frames)

    manager.register_reclaimer(OWNER, lazy_reclaim)
    assert manager.shrink(8) == 8
    for ipa in ipas[:8].tolist():
        assert platform.normal.cpu.read(ipa * PAGE_SIZE_BYTES, len(SECRET)) == bytes(len(SECRET))
    invariants()


def test_file_service_dma_into_flexmem_faults(platform, lent, invariants) -> None:
    _manager, ipas = lent
    platform.normal.storage.write_file("evil.bin", b"\xff" * PAGE_SIZE_BYTES)
    with pytest.raises(DMAFault):
        platform.normal.flash.read_to_memory("evil.bin", 0, int(ipas[0]) * PAGE_SIZE_BYTES,
                                             PAGE_SIZE_BYTES)
    frame = int(platform.secure.port.frames_at_ipas(OWNER, ipas[:1])[0])
    assert platform.secure.port.read(OWNER, frame, 0, len(SECRET)) == SECRET
    invariants()
