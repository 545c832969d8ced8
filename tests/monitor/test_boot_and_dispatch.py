from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import ConfigError, SMCError
from flexserve.monitor.flexmem import IpaStatus
from flexserve.monitor.ledger import FrameState
from flexserve.monitor.platform import boot_platform
from flexserve.monitor.smc_ids import ABI_VERSION, SMC32_YIELD_TOS, SMC64_FAST_SIP, FunctionId
from flexserve.monitor.status import SmcStatus
from flexserve.soc.board import BoardConfig
from flexserve.soc.constants import FRAME_SIZE_BYTES, MIB


def test_boot_state_is_consistent(platform, invariants):
    invariants()
    ctx = platform.monitor.ctx
    layout = platform.soc.layout
    assert ctx.ledger.state[layout.tee_base_frame] == FrameState.RESERVED
    assert ctx.ledger.state[ctx.region.base_frame] == FrameState.RESERVED
    assert ctx.normal_s2.lookup(np.array([0, layout.npu_mmio_page])).tolist() == \
        [0, layout.npu_mmio_page]


def test_too_small_dram_is_a_config_error():
    with pytest.raises(ConfigError):
        boot_platform(BoardConfig.small(dram_bytes=3 * MIB, tee_region_base_bytes=1 * MIB,
                                        tee_region_bytes=2 * MIB))


def test_function_ids_are_sip_fast_smc64_or_trusted_os_yielding():
    for fid in FunctionId:
        if fid is FunctionId.TOS_CALL_WITH_ARG:
            assert fid & 0xFFFF_0000 == SMC32_YIELD_TOS
        else:
            assert fid & 0xFFFF_0000 == SMC64_FAST_SIP


def test_version(attacker):
    result = attacker.smc(FunctionId.VERSION)
    assert result.ok and result.values == ABI_VERSION
    assert result.work.smc_calls == 1 and result.work.world_switches == 2


@pytest.mark.parametrize("fid", [0, -1, 1 << 64, SMC64_FAST_SIP | 0xFFFF, "x", None, True, 1.0])
def test_unknown_ids_are_not_supported(attacker, fid):
    assert attacker.smc(fid).status is SmcStatus.NOT_SUPPORTED


@pytest.mark.parametrize("args", [(-1,), (1 << 64,), (True,), ("1",), (1.0,), (0,) * 8])
def test_bad_registers_are_invalid(attacker, args):
    assert attacker.smc(FunctionId.FLEXMEM_QUERY, *args).status is \
        SmcStatus.INVALID_PARAMETER


@pytest.mark.parametrize("payload", [None, [], [1.5], [-1], np.array([[1]]),
                                     np.array([1.0]), np.array([1 << 63], dtype=np.uint64),
                                     "555", [1 << 70]])
def test_bad_page_lists_are_invalid(attacker, payload):
    result = attacker.smc(FunctionId.FLEXMEM_PROTECT, 1, 1, payload=payload)
    assert result.status is SmcStatus.INVALID_PARAMETER


def test_count_must_match_the_list(attacker, free_ipa):
    result = attacker.smc(FunctionId.FLEXMEM_PROTECT, 1, 3, payload=free_ipa(2))
    assert result.status is SmcStatus.INVALID_PARAMETER


@pytest.mark.parametrize("owner", [0, 256, 1 << 40])
def test_owner_ids_are_checked(attacker, free_ipa, owner):
    result = attacker.smc(FunctionId.FLEXMEM_PROTECT, owner, 1, payload=free_ipa(1))
    assert result.status is SmcStatus.INVALID_PARAMETER


def test_page_list_is_copied_before_use(attacker, port, free_ipa):
    pages = free_ipa(2)
    attacker.smc_checked(FunctionId.FLEXMEM_PROTECT, 2, 2, payload=pages)
    pages[:] = 0  # mutating the caller's buffer afterwards changes nothing
    assert port.owned_frames(2).tolist() == free_ipa(2).tolist()


def test_query_reports_ipa_status(attacker, platform, free_ipa):
    page = int(free_ipa(1)[0])
    assert attacker.smc(FunctionId.FLEXMEM_QUERY, page).values == (IpaStatus.MAPPED, 0)
    attacker.flexmem_protect(4, [page])
    assert attacker.smc(FunctionId.FLEXMEM_QUERY, page).values == (IpaStatus.FLEX_HELD, 4)
    tee = platform.soc.layout.tee_base_frame
    assert attacker.smc(FunctionId.FLEXMEM_QUERY, tee).values == (IpaStatus.UNMAPPED, 0)
    mmio = platform.soc.layout.npu_mmio_page
    assert attacker.smc(FunctionId.FLEXMEM_QUERY, mmio).values == (IpaStatus.DEVICE, 0)


def test_smc_checked_raises(attacker):
    with pytest.raises(SMCError) as refusal:
        attacker.smc_checked(FunctionId.FLEXNPU_RECALL)
    assert refusal.value.code == SmcStatus.NOT_REQUIRED


def test_protect_work_record(attacker, free_ipa):
    record = attacker.flexmem_protect(1, free_ipa(100))
    assert record.s2pt_entries_changed == 100
    assert record.tlb_invalidations == 2  # above the range threshold: one per agent
    small = attacker.flexmem_protect(1, free_ipa(3, start=200))
    assert small.tlb_invalidations == 6
    assert small.frames_touched == 3 and small.smc_calls == 1


def test_guest_layout_map_and_unmap(attacker, free_ipa, invariants):
    a, b = (int(p) for p in free_ipa(2, start=10))
    attacker.cpu.write(a * FRAME_SIZE_BYTES, b"moved")
    assert attacker.smc(FunctionId.S2_UNMAP, a, 1).ok
    assert attacker.smc(FunctionId.S2_UNMAP, b, 1).ok
    assert attacker.smc(FunctionId.S2_MAP, b, a, 1, 3).ok  # frame a now at IPA b
    assert attacker.cpu.read(b * FRAME_SIZE_BYTES, 5) == b"moved"
    invariants()
    assert attacker.smc(FunctionId.S2_UNMAP, b, 1).ok
    assert attacker.smc(FunctionId.S2_UNMAP, b, 1).status is SmcStatus.DENIED
    assert attacker.smc(FunctionId.S2_MAP, a, a, 1, 0).status is SmcStatus.INVALID_PARAMETER
    invariants()


def test_protect_follows_a_moved_frame_and_returns_it_to_its_ipa(attacker, port, free_ipa,
                                                                 invariants):
    a, b = (int(p) for p in free_ipa(2, start=10))
    attacker.smc_checked(FunctionId.S2_UNMAP, a, 1)
    attacker.smc_checked(FunctionId.S2_UNMAP, b, 1)
    attacker.smc_checked(FunctionId.S2_MAP, b, a, 1, 7)
    attacker.flexmem_protect(2, [b])
    assert port.frames_at_ipas(2, [b]).tolist() == [a]
    attacker.flexmem_release(2, [b])
    assert attacker.smc(FunctionId.FLEXMEM_QUERY, b).values == (IpaStatus.MAPPED, 0)
    invariants()


def test_guest_layout_cannot_touch_the_device_window(attacker, platform):
    mmio = platform.soc.layout.npu_mmio_page
    assert attacker.smc(FunctionId.S2_UNMAP, mmio, 1).status is SmcStatus.DENIED


def test_boot_memory_map_excludes_firmware(attacker, platform):
    layout = platform.soc.layout
    el2_end = layout.el2_base_frame + platform.monitor.ctx.region.frame_count
    assert attacker.ram_ranges == [(0, layout.tee_base_frame),
                                   (el2_end, layout.dram_frames - el2_end)]


def test_package_entry_point():
    import flexserve.monitor as monitor

    platform = monitor.boot_platform(BoardConfig.small())
    assert platform.normal.smc(monitor.FunctionId.VERSION).status is monitor.SmcStatus.SUCCESS
