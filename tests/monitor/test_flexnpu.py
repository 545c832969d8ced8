from __future__ import annotations

import pytest

from flexserve.errors import SMCError
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcStatus
from flexserve.soc.npu import NpuMode

OWNER = 5


@pytest.fixture
def driver(attacker, free_ipa):
    base = int(free_ipa(3, start=40)[0])
    attacker.smc_checked(FunctionId.FLEXNPU_REGISTER_DRIVER, base, 2, 1)
    return base


def test_acquire_and_release_round_trip(attacker, port, driver, platform, invariants):
    record = port.npu_acquire(OWNER)
    assert record.npu_mode_switches == 1 and record.smmu_entries_changed == 1
    assert attacker.smc(FunctionId.FLEXNPU_STATUS).values == (NpuMode.SECURE,)
    invariants()
    sandbox = platform.monitor.ctx.sandbox_s2
    assert sandbox.mapped_ipa_pages().size == 3 + platform.soc.layout.npu_mmio_pages
    with pytest.raises(SMCError):
        port.npu_acquire(OWNER)  # busy
    with pytest.raises(SMCError):
        port.npu_release(OWNER + 1)  # not the holder
    port.npu_release(OWNER)
    assert attacker.smc(FunctionId.FLEXNPU_STATUS).values == (NpuMode.NORMAL,)
    assert sandbox.mapped_ipa_pages().size == 0
    invariants()
    with pytest.raises(SMCError) as refusal:
        port.npu_sandbox_cpu()
    assert refusal.value.code == SmcStatus.DENIED


def test_acquire_refused_when_driver_pages_were_given_away(attacker, port, driver):
    attacker.flexmem_protect(9, [driver + 1])
    with pytest.raises(SMCError) as refusal:
        port.npu_acquire(OWNER)
    assert refusal.value.code == SmcStatus.DENIED


def test_register_driver_argument_checks(attacker, platform):
    layout = platform.soc.layout
    assert attacker.smc(FunctionId.FLEXNPU_REGISTER_DRIVER, 10, 0, 1).status is \
        SmcStatus.INVALID_PARAMETER
    assert attacker.smc(FunctionId.FLEXNPU_REGISTER_DRIVER, layout.npu_mmio_page, 1, 0) \
        .status is SmcStatus.INVALID_PARAMETER
    assert attacker.smc(FunctionId.FLEXNPU_REGISTER_DRIVER, 10, 5000, 0).status is \
        SmcStatus.INVALID_PARAMETER


def test_secure_npu_job_in_timing_only_mode(tmp_path):
    from flexserve.errors import DMAFault
    from flexserve.monitor.platform import boot_platform
    from flexserve.soc.board import BoardConfig
    from flexserve.soc.constants import FRAME_SIZE_BYTES
    from flexserve.soc.memory import BackingMode
    from flexserve.soc.npu import DmaRange, NpuJob, NpuReg

    platform = boot_platform(BoardConfig.small(backing=BackingMode.TIMING_ONLY,
                                               flash_root=tmp_path))
    normal, port = platform.normal, platform.secure.port
    first = normal.ram_ranges[1][0]
    normal.smc_checked(FunctionId.FLEXNPU_REGISTER_DRIVER, first, 1, 0)
    normal.flexmem_protect(OWNER, list(range(first + 1, first + 5)))
    frames = port.owned_frames(OWNER)
    port.npu_acquire(OWNER)
    size = 2 * FRAME_SIZE_BYTES
    job = NpuJob(lambda *_: pytest.fail("timing-only runs no kernel"),
                 (DmaRange(int(frames[0]) * FRAME_SIZE_BYTES, size),),
                 (DmaRange(int(frames[2]) * FRAME_SIZE_BYTES, size),))
    sandbox, mmio = port.npu_sandbox_cpu(), normal.npu_mmio_ipa
    sandbox.write_u64(mmio + NpuReg.SUBMIT, port.npu_post_job(job))
    sandbox.write_u64(mmio + NpuReg.DOORBELL, 1)
    assert sandbox.read_u64(mmio + NpuReg.JOBS_DONE) == 1
    assert platform.soc.memory.written[frames[2:4]].all()
    assert platform.soc.npu.work.npu_jobs == 1 and platform.soc.npu.work.bytes_dma == 2 * size
    outside = NpuJob(len, (DmaRange(first * FRAME_SIZE_BYTES, 8),), ())
    with pytest.raises(DMAFault):
        sandbox.write_u64(mmio + NpuReg.SUBMIT, port.npu_post_job(outside))
        sandbox.write_u64(mmio + NpuReg.DOORBELL, 1)
    release = port.release_frames(OWNER, frames)
    assert release.bytes_zeroed == 2 * FRAME_SIZE_BYTES  # only the frames the NPU wrote
