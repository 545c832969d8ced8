"""On-demand protection: stage-2 off only when idle and empty; EL2 tampering is caught."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexserve.errors import SecurityError, TranslationFault
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcStatus
from flexserve.soc.constants import FRAME_SIZE_BYTES

VICTIM_OWNER = 7
IDLE_MS = 60_000


def test_disabling_stage2_while_flex_mem_is_in_use_is_refused(attacker, victim_frames):
    result = attacker.smc(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    assert result.status is SmcStatus.BUSY
    with pytest.raises(TranslationFault):
        attacker.cpu.read(int(victim_frames[0]) * FRAME_SIZE_BYTES, 8)


def test_disabling_stage2_while_the_npu_is_secure_is_refused(attacker, port, free_ipa):
    base = int(free_ipa(1, start=600)[0])
    assert attacker.smc(FunctionId.FLEXNPU_REGISTER_DRIVER, base, 1, 0).ok
    port.npu_acquire(VICTIM_OWNER)
    assert attacker.smc(FunctionId.ODP_DISABLE_S2, IDLE_MS).status is SmcStatus.BUSY


def test_disabling_before_the_idle_window_is_refused(attacker, platform):
    short = platform.monitor.config.idle_window_ms - 1
    assert attacker.smc(FunctionId.ODP_DISABLE_S2, short).status is SmcStatus.DENIED


def test_idle_disable_then_verified_enable(attacker, platform, invariants):
    record = attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS).work
    assert record.bytes_hashed == platform.monitor.ctx.region.buffer.nbytes
    assert attacker.smc(FunctionId.ODP_STATUS).values == (0, 0)
    assert attacker.smc(FunctionId.ODP_DISABLE_S2, IDLE_MS).status is SmcStatus.NOT_REQUIRED
    el2_pa = platform.monitor.ctx.region.pa_of("normal_pa")
    assert len(attacker.cpu.read(el2_pa, 8)) == 8  # IPA == PA: EL2 memory is reachable now
    assert attacker.smc_checked(FunctionId.ODP_ENABLE_S2).work.bytes_hashed > 0
    assert attacker.smc(FunctionId.ODP_STATUS).values == (1, 0)
    invariants()


def test_protect_re_enables_stage2_first(attacker, free_ipa, invariants):
    attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    pages = free_ipa(2)
    attacker.flexmem_protect(3, pages)
    assert attacker.smc(FunctionId.ODP_STATUS).values == (1, 0)
    with pytest.raises(TranslationFault):
        attacker.cpu.read(int(pages[0]) * FRAME_SIZE_BYTES, 8)
    invariants()


@pytest.mark.parametrize("field", ["normal_pa", "state", "frame_ipa", "code", "header",
                                   "sandbox_pa"])
def test_tampering_with_el2_state_while_stage2_is_off_is_detected(attacker, platform, field):
    attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    target = platform.monitor.ctx.region.pa_of(field) + 8
    original = attacker.cpu.read(target, 4)
    attacker.cpu.write(target, bytes(b ^ 0x5A for b in original))
    with pytest.raises(SecurityError):
        attacker.smc(FunctionId.ODP_ENABLE_S2)


def test_a_forged_stage2_entry_exposing_the_s2pt_is_caught(attacker, platform):
    """The attack the hash exists for: map an IPA onto the S2PT itself, then re-enable."""
    attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    region = platform.monitor.ctx.region
    spare_ipa = int(region.base_frame) - 1  # a TEE page: never mapped in the S2PT
    s2pt_frame = region.pa_of("normal_pa") // FRAME_SIZE_BYTES
    entry_pa = region.pa_of("normal_pa") + 4 * spare_ipa
    attacker.cpu.write(entry_pa, np.int32(s2pt_frame).tobytes())
    attacker.cpu.write(region.pa_of("normal_perm") + spare_ipa, bytes([3]))
    # the forged entry is in the live table: accepted, it would give the OS the S2PT
    assert platform.monitor.ctx.normal_s2.lookup(np.array([spare_ipa]))[0] == s2pt_frame
    with pytest.raises(SecurityError):
        attacker.smc(FunctionId.ODP_ENABLE_S2)
    assert attacker.smc(FunctionId.ODP_STATUS).values == (0, 1)  # off and locked


def test_after_detection_the_monitor_fails_closed(attacker, platform, port, free_ipa):
    attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    target = platform.monitor.ctx.region.pa_of("state")
    attacker.cpu.write(target, b"\x01")
    with pytest.raises(SecurityError):
        attacker.flexmem_protect(3, free_ipa(1))  # protect re-enables, and so verifies
    result = attacker.smc(FunctionId.FLEXMEM_PROTECT, 3, 1, payload=free_ipa(1))
    assert result.status is SmcStatus.DENIED
    assert attacker.smc(FunctionId.ODP_ENABLE_S2).status is SmcStatus.DENIED
    assert attacker.smc(FunctionId.ODP_STATUS).values == (0, 1)
    from flexserve.errors import SMCError

    with pytest.raises(SMCError):
        port.npu_acquire(VICTIM_OWNER)


def test_restoring_the_exact_bytes_is_not_tampering(attacker, platform):
    attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    target = platform.monitor.ctx.region.pa_of("normal_pa")
    original = attacker.cpu.read(target, 16)
    attacker.cpu.write(target, b"\xff" * 16)
    attacker.cpu.write(target, original)
    assert attacker.smc(FunctionId.ODP_ENABLE_S2).ok


def test_the_trusted_side_never_uses_a_ledger_forged_while_stage2_is_off(attacker, platform,
                                                                         port, free_ipa):
    """Forge 'frame X is the TA's Flex-Mem' so the TA would write secrets into OS memory."""
    attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    region = platform.monitor.ctx.region
    frame = int(free_ipa(1, start=30)[0])
    attacker.cpu.write(region.pa_of("state") + frame, bytes([2]))  # FLEX_MAPPED
    attacker.cpu.write(region.pa_of("owner") + frame, bytes([VICTIM_OWNER]))
    with pytest.raises(SecurityError):
        port.owned_frames(VICTIM_OWNER)
    from flexserve.errors import SMCError

    with pytest.raises(SMCError):  # locked: nothing is handed out any more
        port.write(VICTIM_OWNER, frame, 0, b"secret")


def test_garbage_in_el2_state_cannot_crash_a_query(attacker, platform):
    attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    region = platform.monitor.ctx.region
    attacker.cpu.write(region.pa_of("ipa_holder") + 4 * 100, np.int32(2**31 - 1).tobytes())
    with pytest.raises(SecurityError):  # verified before use, never dereferenced
        attacker.smc(FunctionId.FLEXMEM_QUERY, 100)


@settings(max_examples=40, deadline=None)
@given(offset_fraction=st.floats(0, 1, exclude_max=True), garbage=st.binary(min_size=1,
                                                                             max_size=8),
       calls=st.lists(st.sampled_from([
           (FunctionId.FLEXMEM_QUERY, (600,)), (FunctionId.FLEXMEM_PROTECT, (1, 1)),
           (FunctionId.FLEXMEM_RELEASE, (1, 1)), (FunctionId.S2_UNMAP, (600, 1)),
           (FunctionId.FLEXNPU_REGISTER_DRIVER, (600, 1, 0)), (FunctionId.FLEXNPU_RECALL, ()),
           (FunctionId.ODP_ENABLE_S2, ()), (FunctionId.ODP_DISABLE_S2, (IDLE_MS,))]),
           min_size=1, max_size=6))
def test_random_el2_tampering_is_caught_or_harmless(offset_fraction, garbage, calls):
    platform = _fresh_platform()
    attacker = platform.normal
    attacker.smc_checked(FunctionId.ODP_DISABLE_S2, IDLE_MS)
    region = platform.monitor.ctx.region
    offset = int(offset_fraction * (region.buffer.nbytes - len(garbage)))
    base = region.base_frame * FRAME_SIZE_BYTES
    changed = attacker.cpu.read(base + offset, len(garbage)) != garbage
    attacker.cpu.write(base + offset, garbage)
    detected = False
    for fid, args in calls:
        try:
            attacker.smc(fid, *args, payload=[600])
        except SecurityError:
            assert changed and not detected  # raised once, then the monitor is locked
            detected = True
    if detected:
        assert attacker.smc(FunctionId.ODP_STATUS).values == (0, 1)


def _fresh_platform():
    from flexserve.monitor.platform import boot_platform
    from flexserve.soc.board import BoardConfig

    return boot_platform(BoardConfig.small())
