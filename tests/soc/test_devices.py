"""TZASC, bus, SMMU streams, flash controller, NPU: hardware behaviour without firmware."""

from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import ConfigError, DMAFault, HardwareFault, PermissionFault
from flexserve.soc.access import Perm, World
from flexserve.soc.board import BoardConfig, SoC
from flexserve.soc.constants import FRAME_SIZE_BYTES, GIB
from flexserve.soc.memory import BackingMode
from flexserve.soc.npu import SRAM_WINDOW_OFFSET, DmaRange, NpuJob, NpuMode, NpuReg
from flexserve.soc.smmu import StreamId
from flexserve.soc.stage2 import Stage2Table
from flexserve.soc.tzasc import TZASC_REGION_COUNT, Tzasc, TzascRegion


@pytest.fixture
def soc(tmp_path) -> SoC:
    soc = SoC(BoardConfig.small(flash_root=tmp_path))
    pages = soc.layout.ipa_pages
    normal = Stage2Table.allocate(pages)
    identity = np.arange(pages)
    normal.map_pages(identity, identity, Perm.RWX)
    soc.install_stage2(normal, Stage2Table.allocate(pages))
    return soc


def test_default_board_layout():
    soc = SoC()
    assert soc.memory.size_bytes == 16 * GIB
    assert soc.layout.npu_mmio_page == soc.layout.dram_frames
    assert soc.layout.el2_base_frame == soc.layout.tee_base_frame + soc.layout.tee_frames


def test_tzasc_has_eight_non_overlapping_regions():
    tzasc = Tzasc(1000)
    for index in range(TZASC_REGION_COUNT):
        tzasc.set_region(index, TzascRegion(index * 10, 5))
    assert tzasc.free_slots() == []
    with pytest.raises(ConfigError):
        tzasc.set_region(8, TzascRegion(900, 1))
    with pytest.raises(ConfigError):
        tzasc.set_region(0, TzascRegion(12, 4))
    assert tzasc.secure_mask(np.array([0, 5, 10, 74])).tolist() == [True, False, True, True]
    with pytest.raises(PermissionFault):
        tzasc.check_nonsecure(np.array([3]))


def test_tzasc_blocks_normal_cpu_and_dma_but_not_secure(soc):
    soc.secure_tee_region()
    tee_pa = soc.layout.tee_base_frame * FRAME_SIZE_BYTES
    with pytest.raises(PermissionFault):
        soc.normal_cpu.read(tee_pa, 1)
    with pytest.raises(DMAFault):
        soc.generic_dma.write(tee_pa, b"x")
    soc.bus.write(tee_pa, b"tee", World.SECURE)
    assert soc.bus.read(tee_pa, 3, World.SECURE) == b"tee"


def test_bus_error_outside_decoded_space(soc):
    with pytest.raises(HardwareFault):
        soc.bus.read(soc.bus.page_limit * FRAME_SIZE_BYTES, 1, World.SECURE)


def test_disabled_stream_faults(soc):
    soc.smmu.configure(StreamId.GENERIC_DMA, None, World.NORMAL)
    with pytest.raises(DMAFault):
        soc.generic_dma.read(0, 1)


def test_dma_into_device_window_faults(soc):
    with pytest.raises(DMAFault):
        soc.generic_dma.write(soc.layout.npu_mmio_page * FRAME_SIZE_BYTES, b"x")


def test_flash_round_trip_through_dma(soc):
    soc.flash.storage.write_file("model.bin", b"0123456789")
    record = soc.flash.read_to_memory("model.bin", 2, 0x5000, 6)
    assert record.bytes_read_flash == 6 and record.bytes_dma == 6
    assert soc.normal_cpu.read(0x5000, 6) == b"234567"
    soc.flash.write_from_memory("copy.bin", 0, 0x5000, 6)
    assert soc.flash.storage.read_file("copy.bin") == b"234567"
    with pytest.raises(HardwareFault):
        soc.flash.read_to_memory("model.bin", 8, 0x5000, 6)
    with pytest.raises(ConfigError):
        soc.flash.storage.path("../outside")


def test_flash_timing_only_counts_without_bytes(tmp_path):
    soc = SoC(BoardConfig.small(flash_root=tmp_path, backing=BackingMode.TIMING_ONLY))
    table = Stage2Table.allocate(soc.layout.ipa_pages)
    identity = np.arange(soc.layout.ipa_pages)
    table.map_pages(identity, identity, Perm.RWX)
    soc.install_stage2(table, Stage2Table.allocate(soc.layout.ipa_pages))
    soc.flash.storage.create_sparse("big.bin", 1 << 30)
    record = soc.flash.read_to_memory("big.bin", 0, 0x10000, 3 * FRAME_SIZE_BYTES)
    assert record.bytes_read_flash == 3 * FRAME_SIZE_BYTES
    assert soc.memory.written[0x10:0x13].all()


def _ring(soc, handle):
    mmio = soc.layout.npu_mmio_page * FRAME_SIZE_BYTES
    soc.normal_cpu.write_u64(mmio + NpuReg.SUBMIT, handle)
    soc.normal_cpu.write_u64(mmio + NpuReg.DOORBELL, 1)


def test_npu_job_reads_computes_writes(soc):
    soc.normal_cpu.write(0x3000, bytes(range(16)))
    job = NpuJob(lambda x: [x * 2], (DmaRange(0x3000, 16),), (DmaRange(0x4000, 16),))
    _ring(soc, soc.npu.post_command_buffer(job))
    assert soc.normal_cpu.read(0x4000, 16) == bytes(2 * i for i in range(16))
    mmio = soc.layout.npu_mmio_page * FRAME_SIZE_BYTES
    assert soc.normal_cpu.read_u64(mmio + NpuReg.JOBS_DONE) == 1
    assert soc.normal_cpu.read(mmio + SRAM_WINDOW_OFFSET, 4) != bytes(4)


def test_npu_kernel_with_wrong_outputs_is_an_error(soc):
    job = NpuJob(lambda x: [x[:3]], (DmaRange(0x3000, 16),), (DmaRange(0x4000, 16),))
    with pytest.raises(HardwareFault):
        _ring(soc, soc.npu.post_command_buffer(job))


def test_npu_mode_switch_scrubs_everything(soc):
    soc.npu.sram[:] = 7
    soc.npu.post_command_buffer(NpuJob(lambda: [], (), ()))
    record = soc.npu.set_mode(NpuMode.SECURE)
    assert record.npu_mode_switches == 1 and record.bytes_zeroed == soc.npu.sram.size
    assert soc.npu.internal_state_is_clean()
    assert soc.npu.mmio_read(SRAM_WINDOW_OFFSET, 8) == bytes(8)
