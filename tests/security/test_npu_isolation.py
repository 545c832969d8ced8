"""The compromised kernel against Flex-NPU: MMIO, driver pages, DMA and leftover state."""

from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import DMAFault, PermissionFault, TranslationFault
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcStatus
from flexserve.soc.constants import FRAME_SIZE_BYTES
from flexserve.soc.npu import SRAM_WINDOW_OFFSET, DmaRange, NpuJob, NpuMode, NpuReg, NpuStatus

VICTIM_OWNER = 7
VICTIM_SECRET = b"model-weights: top secret bytes!"


def pa(frame: int) -> int:
    return int(frame) * FRAME_SIZE_BYTES


def ring(cpu, mmio_ipa: int, handle: int) -> None:
    """What the NPU driver does to launch a job: SUBMIT the handle, ring the doorbell."""
    cpu.write_u64(mmio_ipa + NpuReg.SUBMIT, handle)
    cpu.write_u64(mmio_ipa + NpuReg.DOORBELL, 1)


def invert(data: np.ndarray) -> list[np.ndarray]:
    return [np.bitwise_not(data)]


@pytest.fixture
def driver_ipa(attacker, free_ipa) -> int:
    """The OS registers its NPU driver: one code page, one data page."""
    base = int(free_ipa(2, start=500)[0])
    assert attacker.smc(FunctionId.FLEXNPU_REGISTER_DRIVER, base, 1, 1).ok
    attacker.cpu.write(base * FRAME_SIZE_BYTES, b"driver code")
    return base


@pytest.fixture
def secure_npu(port, victim_frames, driver_ipa):
    port.npu_acquire(VICTIM_OWNER)
    return victim_frames


def run_secure_job(platform, port, frames) -> None:
    job = NpuJob(invert, (DmaRange(pa(frames[0]), FRAME_SIZE_BYTES),),
                 (DmaRange(pa(frames[1]), FRAME_SIZE_BYTES),))
    ring(port.npu_sandbox_cpu(), platform.normal.npu_mmio_ipa, port.npu_post_job(job))


def test_npu_mmio_is_unreachable_in_secure_mode(attacker, secure_npu):
    with pytest.raises(TranslationFault):
        attacker.cpu.read(attacker.npu_mmio_ipa, 8)
    with pytest.raises(TranslationFault):
        attacker.cpu.write_u64(attacker.npu_mmio_ipa + NpuReg.DOORBELL, 1)
    with pytest.raises(TranslationFault):
        attacker.cpu.read(attacker.npu_mmio_ipa + SRAM_WINDOW_OFFSET, 8)


def test_driver_pages_leave_the_os_while_sandboxed(attacker, secure_npu, driver_ipa):
    with pytest.raises(TranslationFault):
        attacker.cpu.write(driver_ipa * FRAME_SIZE_BYTES, b"patch the driver")


def test_sandbox_sees_only_driver_pages_and_mmio(platform, port, secure_npu, driver_ipa,
                                                 free_ipa):
    sandbox = port.npu_sandbox_cpu()
    assert sandbox.read(driver_ipa * FRAME_SIZE_BYTES, 11) == b"driver code"
    with pytest.raises(PermissionFault):
        sandbox.write(driver_ipa * FRAME_SIZE_BYTES, b"x")  # code is read-only
    sandbox.write((driver_ipa + 1) * FRAME_SIZE_BYTES, b"data ok")
    for forbidden in (pa(secure_npu[0]), int(free_ipa(1, start=900)[0]) * FRAME_SIZE_BYTES):
        with pytest.raises(TranslationFault):
            sandbox.read(forbidden, 8)


def test_secure_job_computes_on_flex_mem(platform, port, secure_npu):
    run_secure_job(platform, port, secure_npu)
    out = port.read(VICTIM_OWNER, int(secure_npu[1]), 0, len(VICTIM_SECRET))
    assert out == bytes(~b & 0xFF for b in VICTIM_SECRET)
    assert platform.soc.npu.sram.any()  # operands passed through SRAM


def test_nothing_of_a_secure_job_is_readable_after_return(attacker, platform, port,
                                                          secure_npu):
    run_secure_job(platform, port, secure_npu)
    port.npu_release(VICTIM_OWNER)
    mmio = attacker.npu_mmio_ipa
    assert attacker.cpu.read_u64(mmio + NpuReg.MODE) == NpuMode.NORMAL
    for reg in (NpuReg.STATUS, NpuReg.QUEUE_DEPTH, NpuReg.JOBS_DONE,
                NpuReg.LAST_OUTPUT_BYTES):
        assert attacker.cpu.read_u64(mmio + reg) == 0
    sram_bytes = platform.soc.npu.sram.size
    assert attacker.cpu.read(mmio + SRAM_WINDOW_OFFSET, sram_bytes) == bytes(sram_bytes)
    assert platform.soc.npu.internal_state_is_clean()


def test_os_recall_scrubs_the_npu(attacker, platform, port, secure_npu, invariants):
    run_secure_job(platform, port, secure_npu)
    assert attacker.smc(FunctionId.FLEXNPU_RECALL).ok
    assert platform.soc.npu.internal_state_is_clean()
    sram_bytes = platform.soc.npu.sram.size
    window = attacker.npu_mmio_ipa + SRAM_WINDOW_OFFSET
    assert attacker.cpu.read(window, sram_bytes) == bytes(sram_bytes)
    with pytest.raises(TranslationFault):  # Flex-Mem stays protected after the recall
        attacker.cpu.read(pa(secure_npu[0]), 8)
    invariants()


def test_secure_npu_dma_is_confined_to_the_owner(platform, port, attacker, secure_npu,
                                                 free_ipa):
    normal_page = int(free_ipa(1, start=800)[0])
    attacker.flexmem_protect(9, free_ipa(1, start=801))
    other_owner = int(port.owned_frames(9)[0])
    for target in (normal_page, other_owner):
        job = NpuJob(invert, (DmaRange(pa(secure_npu[0]), 64),), (DmaRange(pa(target), 64),))
        with pytest.raises(DMAFault):
            ring(port.npu_sandbox_cpu(), attacker.npu_mmio_ipa, port.npu_post_job(job))
        assert platform.soc.npu.status is NpuStatus.FAULT


def test_normal_mode_npu_cannot_dma_a_protected_frame(attacker, victim_frames, free_ipa):
    out = int(free_ipa(1, start=800)[0])
    job = NpuJob(invert, (DmaRange(pa(victim_frames[0]), 64),), (DmaRange(pa(out), 64),))
    with pytest.raises(DMAFault):
        ring(attacker.cpu, attacker.npu_mmio_ipa, attacker.npu_post_job(job))
    assert attacker.cpu.read(pa(out), 64) == bytes(64)


def test_command_buffers_from_normal_mode_do_not_survive_the_switch(attacker, platform, port,
                                                                    victim_frames, driver_ipa):
    leak = int(victim_frames[0])
    planted = attacker.npu_post_job(NpuJob(invert, (DmaRange(pa(leak), 64),), ()))
    port.npu_acquire(VICTIM_OWNER)
    ring(port.npu_sandbox_cpu(), attacker.npu_mmio_ipa, planted)
    assert platform.soc.npu.status is NpuStatus.ERROR
    assert platform.soc.npu.jobs_done == 0


def test_acquire_without_a_registered_driver_is_refused(port, victim_frames):
    from flexserve.errors import SMCError

    with pytest.raises(SMCError) as refusal:
        port.npu_acquire(VICTIM_OWNER)
    assert refusal.value.code == SmcStatus.DENIED


def test_driver_registration_is_refused_while_secure(attacker, secure_npu, driver_ipa):
    result = attacker.smc(FunctionId.FLEXNPU_REGISTER_DRIVER, driver_ipa + 10, 1, 0)
    assert result.status is SmcStatus.BUSY
