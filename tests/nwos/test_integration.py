"""Phase 2: the normal-world OS on a booted platform with the real Flex-Monitor."""

from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import SMCError, TranslationFault
from flexserve.monitor.flexmem import IpaStatus
from flexserve.monitor.platform import Platform, boot_platform
from flexserve.monitor.smc_ids import FunctionId
from flexserve.nwos.boot import kernel_for
from flexserve.nwos.events import EventKind
from flexserve.nwos.flexmem import FlexMemManager
from flexserve.nwos.kernel import KernelConfig
from flexserve.nwos.npu_driver import JobOutcome, NpuDriver
from flexserve.nwos.page import PAGE_SIZE_BYTES, PageKind, PageState
from flexserve.nwos.tee_files import TeeFileService
from flexserve.nwos.watermarks import Watermarks
from flexserve.soc.board import BoardConfig
from flexserve.soc.constants import MIB
from flexserve.soc.npu import DmaRange, NpuJob

OWNER = 7


class FakeFramework:
    """Just enough of the secure framework: maps what it gets, writes secrets, reclaims."""

    def __init__(self, platform: Platform, manager: FlexMemManager) -> None:
        self.port = platform.secure.port
        self.manager = manager
        self.frames = np.zeros(0, dtype=np.int64)
        manager.register_reclaimer(OWNER, self.rsmem_reclaim)

    def grow(self, size_bytes: int) -> np.ndarray:
        ipas = self.manager.rsmem_alloc(OWNER, size_bytes)
        frames = self.port.frames_at_ipas(OWNER, ipas)
        self.port.map_frames(OWNER, frames)
        for frame in frames.tolist():
            self.port.write(OWNER, frame, 0, b"secret weights!!")
        self.frames = np.concatenate([self.frames, frames])
        return ipas

    def rsmem_reclaim(self, size_bytes: int) -> np.ndarray:
        count = min(-(-size_bytes // PAGE_SIZE_BYTES), self.frames.size)
        victims, self.frames = self.frames[:count], self.frames[count:]
        self.port.scrub_frames(OWNER, victims)
        self.port.unmap_frames(OWNER, victims)
        return self.port.ipas_of(OWNER, victims)


@pytest.fixture()
def world() -> tuple[Platform, FlexMemManager, FakeFramework]:
    platform = boot_platform(BoardConfig.small(dram_bytes=32 * MIB))
    kernel = kernel_for(platform.normal, KernelConfig(total_pages=1,
                                                      watermarks=Watermarks(16, 32, 64)))
    manager = FlexMemManager(kernel, platform.normal)
    return platform, manager, FakeFramework(platform, manager)


def test_kernel_never_manages_tee_or_el2_frames(world) -> None:
    platform, manager, _ = world
    pm = manager.kernel.buddy.pages
    usable = np.flatnonzero(pm.state != PageState.RESERVED)
    ram = np.concatenate([np.arange(s, s + n) for s, n in platform.normal.ram_ranges])
    assert np.array_equal(usable, ram)


def test_rsmem_alloc_removes_frames_from_normal_s2pt(world) -> None:
    platform, manager, fw = world
    ipas = fw.grow(1 * MIB)
    assert ipas.size == 256 and manager.lent_pages(OWNER) == 256
    cpu = platform.normal.cpu
    for ipa in ipas[:8].tolist():
        with pytest.raises(TranslationFault):
            cpu.read(ipa * PAGE_SIZE_BYTES, 16)
        status = platform.normal.smc_checked(FunctionId.FLEXMEM_QUERY, ipa).values
        assert status[0] == IpaStatus.FLEX_HELD and status[1] == OWNER
    assert manager.work.smc_calls >= 1 and manager.work.s2pt_entries_changed == 256


def test_reclaim_round_trip_returns_zeroed_frames(world) -> None:
    platform, manager, fw = world
    ipas = fw.grow(2 * MIB)
    kernel = manager.kernel
    # memory pressure: an app wants nearly everything that is left plus some
    app = kernel.spawn_app("hungry", oom_score_adj=0)
    want = kernel.buddy.free_pages() + 100
    kernel.alloc(app.app_id, PageKind.ANON, want)
    reclaimed = kernel.events.of_kind(EventKind.SECURE_RECLAIM)
    assert reclaimed and reclaimed[0].pages >= 100
    back = ipas[kernel.buddy.pages.state[ipas] == PageState.ALLOCATED]
    back = back[kernel.buddy.pages.kind[back] == PageKind.ANON]
    assert back.size > 0
    for ipa in back[:16].tolist():
        assert platform.normal.cpu.read(ipa * PAGE_SIZE_BYTES, PAGE_SIZE_BYTES) == \
            bytes(PAGE_SIZE_BYTES)
    assert manager.lent_pages(OWNER) == ipas.size - reclaimed[0].pages
    kernel.buddy.check_invariants()


def test_rsmem_free_and_refused_protect_leave_no_trace(world) -> None:
    platform, manager, fw = world
    ipas = fw.grow(64 * PAGE_SIZE_BYTES)
    returned = fw.rsmem_reclaim(64 * PAGE_SIZE_BYTES)
    assert manager.rsmem_free(OWNER, returned) == 64
    assert manager.lent_pages() == 0
    for ipa in ipas[:4].tolist():
        assert platform.normal.cpu.read(ipa * PAGE_SIZE_BYTES, 16) == bytes(16)
    free_before = manager.kernel.buddy.free_pages()
    with pytest.raises(SMCError):
        manager.rsmem_alloc(0, PAGE_SIZE_BYTES)  # owner 0 is invalid: monitor refuses
    assert manager.kernel.buddy.free_pages() == free_before
    manager.kernel.buddy.check_invariants()


def test_tee_file_service_dmas_file_into_shared_pages(world) -> None:
    platform, manager, _ = world
    data = np.random.default_rng(3).integers(0, 256, 3 * PAGE_SIZE_BYTES + 100,
                                             dtype=np.uint8).tobytes()
    platform.normal.storage.write_file("model.sealed", data)
    service = TeeFileService(manager.kernel, platform.normal)
    buffer = service.read("model.sealed", 50, len(data) - 50)
    got = b"".join(platform.secure.port.read_shared(ipa, size)  # IPA == PA for normal RAM
                   for _, ipa, size in buffer.runs())
    assert got == data[50:]
    assert service.work.bytes_read_flash == len(data) - 50
    service.release(buffer)
    manager.kernel.buddy.check_invariants()


def test_npu_driver_runs_a_job_in_normal_mode(world) -> None:
    platform, manager, fw = world
    kernel = manager.kernel
    driver = NpuDriver(kernel, platform.normal)
    driver.register_with_monitor()
    src = int(kernel.alloc_block(0, PageKind.KERNEL, 0))
    dst = int(kernel.alloc_block(0, PageKind.KERNEL, 0))
    platform.normal.cpu.write(src * PAGE_SIZE_BYTES, bytes(range(64)))
    job = NpuJob(lambda a: [a[::-1].copy()], (DmaRange(src * PAGE_SIZE_BYTES, 64),),
                 (DmaRange(dst * PAGE_SIZE_BYTES, 64),))
    assert driver.submit(job) == JobOutcome.DONE
    assert platform.normal.cpu.read(dst * PAGE_SIZE_BYTES, 64) == bytes(range(63, -1, -1))
    flex = int(fw.grow(PAGE_SIZE_BYTES)[0])
    bad = NpuJob(lambda a: [a.copy()], (DmaRange(src * PAGE_SIZE_BYTES, 64),),
                 (DmaRange(flex * PAGE_SIZE_BYTES, 64),))
    assert driver.submit(bad) == JobOutcome.FAULT  # Flex-Mem is out of the DMA view


def test_pressure_order_cache_then_secure_then_swap_then_kill() -> None:
    platform = boot_platform(BoardConfig.small(dram_bytes=32 * MIB))
    kernel = kernel_for(platform.normal, KernelConfig(
        total_pages=1, swap_pages=256, watermarks=Watermarks(16, 32, 64)))
    manager = FlexMemManager(kernel, platform.normal)
    fw = FakeFramework(platform, manager)
    fw.grow(2 * MIB)
    reader = kernel.spawn_app("reader")
    kernel.alloc(reader.app_id, PageKind.PAGE_CACHE, 512)
    idle = kernel.spawn_app("idle", oom_score_adj=800)
    kernel.alloc(idle.app_id, PageKind.ANON, 1024)
    fg = kernel.spawn_app("foreground", oom_score_adj=0)
    kernel.alloc(fg.app_id, PageKind.ANON, kernel.buddy.free_pages() + 512 + 512 + 256 + 300)
    kinds = [k for k in kernel.events.kinds() if k != EventKind.PRESSURE]
    order = [EventKind.DROP_CACHE, EventKind.SECURE_RECLAIM, EventKind.SWAP_OUT,
             EventKind.KILL]
    firsts = [kinds.index(k) for k in order]
    assert firsts == sorted(firsts)
    assert manager.lent_pages(OWNER) == 0  # the secure side gave back everything it had
    assert [e.subject for e in kernel.events.of_kind(EventKind.KILL)] == ["idle"]
    kernel.buddy.check_invariants()
