"""The compromised kernel against Flex-Mem, TZASC memory and the EL2 region."""

from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import DMAFault, PermissionFault, TranslationFault
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcStatus
from flexserve.soc.access import Perm
from flexserve.soc.constants import FRAME_SIZE_BYTES

VICTIM_OWNER = 7
VICTIM_SECRET = b"model-weights: top secret bytes!"


def pa(frame: int) -> int:
    return int(frame) * FRAME_SIZE_BYTES


def secret_intact(port, frames) -> bool:
    return all(port.read(VICTIM_OWNER, f, 0, len(VICTIM_SECRET)) == VICTIM_SECRET
               for f in frames.tolist())


def test_reading_a_protected_frame_faults(attacker, victim_frames):
    for frame in victim_frames.tolist():
        with pytest.raises(TranslationFault):
            attacker.cpu.read(pa(frame), 16)


def test_reading_across_into_a_protected_frame_faults(attacker, victim_frames):
    with pytest.raises(TranslationFault):
        attacker.cpu.read(pa(victim_frames[0]) - 8, 16)


def test_writing_a_protected_frame_faults(attacker, port, victim_frames):
    with pytest.raises(TranslationFault):
        attacker.cpu.write(pa(victim_frames[1]), b"overwrite")
    assert secret_intact(port, victim_frames)


def test_flash_dma_into_a_protected_frame_faults(attacker, port, victim_frames):
    attacker.storage.write_file("evil.bin", b"\xff" * FRAME_SIZE_BYTES)
    with pytest.raises(DMAFault):
        attacker.flash.read_to_memory("evil.bin", 0, pa(victim_frames[0]), FRAME_SIZE_BYTES)
    assert secret_intact(port, victim_frames)


def test_flash_dma_out_of_a_protected_frame_faults(attacker, victim_frames):
    with pytest.raises(DMAFault):
        attacker.flash.write_from_memory("leak.bin", 0, pa(victim_frames[0]), 64)
    assert not attacker.storage.exists("leak.bin")


def test_generic_dma_into_a_protected_frame_faults(attacker, port, victim_frames, free_ipa):
    source = int(free_ipa(1, start=100)[0]) * FRAME_SIZE_BYTES
    attacker.cpu.write(source, b"\xee" * 64)
    with pytest.raises(DMAFault):
        attacker.generic_dma.copy(source, pa(victim_frames[2]), 64)
    with pytest.raises(DMAFault):
        attacker.generic_dma.write(pa(victim_frames[2]), b"x")
    assert secret_intact(port, victim_frames)


def test_generic_dma_read_of_a_protected_frame_faults(attacker, victim_frames, free_ipa):
    target = int(free_ipa(1, start=100)[0]) * FRAME_SIZE_BYTES
    with pytest.raises(DMAFault):
        attacker.generic_dma.copy(pa(victim_frames[0]), target, 64)
    assert attacker.cpu.read(target, 64) == bytes(64)


def test_remapping_a_protected_frame_at_another_ipa_is_refused(attacker, victim_frames,
                                                               free_ipa):
    spare_ipa = int(free_ipa(1, start=200)[0])
    assert attacker.smc(FunctionId.S2_UNMAP, spare_ipa, 1).ok
    victim = int(victim_frames[0])
    result = attacker.smc(FunctionId.S2_MAP, spare_ipa, victim, 1, int(Perm.RW))
    assert result.status is SmcStatus.DENIED
    with pytest.raises(TranslationFault):
        attacker.cpu.read(spare_ipa * FRAME_SIZE_BYTES, 8)


def test_mapping_over_a_held_ipa_is_refused(attacker, victim_frames, free_ipa):
    spare_frame = int(free_ipa(1, start=200)[0])
    assert attacker.smc(FunctionId.S2_UNMAP, spare_frame, 1).ok
    held_ipa = int(victim_frames[0])  # identity layout: the frame's own IPA is now held
    result = attacker.smc(FunctionId.S2_MAP, held_ipa, spare_frame, 1, int(Perm.RW))
    assert result.status is SmcStatus.DENIED


def test_aliasing_a_normal_frame_is_refused(attacker, free_ipa):
    mapped, spare = (int(p) for p in free_ipa(2, start=300))
    assert attacker.smc(FunctionId.S2_UNMAP, spare, 1).ok
    result = attacker.smc(FunctionId.S2_MAP, spare, mapped, 1, int(Perm.RW))
    assert result.status is SmcStatus.DENIED


def test_double_protect_is_refused(attacker, victim_frames, invariants):
    pages = victim_frames[:1]
    result = attacker.smc(FunctionId.FLEXMEM_PROTECT, 3, 1, payload=pages)
    assert result.status is SmcStatus.DENIED
    invariants()


def test_duplicate_pages_in_one_request_are_refused(attacker, free_ipa):
    page = int(free_ipa(1)[0])
    result = attacker.smc(FunctionId.FLEXMEM_PROTECT, 3, 2, payload=[page, page])
    assert result.status is SmcStatus.INVALID_PARAMETER


def test_double_release_is_refused(attacker, port, free_ipa, invariants):
    pages = free_ipa(3, start=50)
    attacker.flexmem_protect(5, pages)
    assert attacker.smc(FunctionId.FLEXMEM_RELEASE, 5, 3, payload=pages).ok
    again = attacker.smc(FunctionId.FLEXMEM_RELEASE, 5, 3, payload=pages)
    assert again.status is SmcStatus.DENIED
    invariants()


def test_release_with_the_wrong_owner_is_refused(attacker, port, victim_frames):
    port.unmap_frames(VICTIM_OWNER, victim_frames)
    result = attacker.smc(FunctionId.FLEXMEM_RELEASE, VICTIM_OWNER + 1, 4,
                          payload=victim_frames)
    assert result.status is SmcStatus.DENIED


def test_release_of_a_frame_never_protected_is_refused(attacker, free_ipa):
    pages = free_ipa(2, start=70)
    result = attacker.smc(FunctionId.FLEXMEM_RELEASE, 1, 2, payload=pages)
    assert result.status is SmcStatus.DENIED


def test_release_of_a_frame_the_ta_still_uses_is_refused(attacker, port, victim_frames):
    result = attacker.smc(FunctionId.FLEXMEM_RELEASE, VICTIM_OWNER, 4, payload=victim_frames)
    assert result.status is SmcStatus.DENIED
    assert secret_intact(port, victim_frames)


def test_secure_release_of_another_owners_frame_is_refused(port, victim_frames):
    from flexserve.errors import SMCError

    with pytest.raises(SMCError) as refusal:
        port.release_frames(VICTIM_OWNER + 1, victim_frames[:1])
    assert refusal.value.code == SmcStatus.DENIED
    assert secret_intact(port, victim_frames)


def test_a_refused_request_changes_nothing(attacker, platform, free_ipa, invariants):
    good = free_ipa(3, start=20)
    mmio_page = platform.soc.layout.npu_mmio_page
    result = attacker.smc(FunctionId.FLEXMEM_PROTECT, 2, 4,
                          payload=np.append(good, mmio_page))
    assert result.status is SmcStatus.DENIED
    assert attacker.cpu.read(int(good[0]) * FRAME_SIZE_BYTES, 4) == bytes(4)
    assert platform.secure.port.owned_frames(2).size == 0
    invariants()


def test_protecting_tee_el2_or_mmio_is_refused(attacker, platform):
    layout = platform.soc.layout
    region = platform.monitor.ctx.region
    for page in (layout.tee_base_frame, region.base_frame, layout.npu_mmio_page):
        result = attacker.smc(FunctionId.FLEXMEM_PROTECT, 1, 1, payload=[page])
        assert result.status is SmcStatus.DENIED


def test_released_frames_come_back_zeroed(attacker, port, victim_frames, invariants):
    port.unmap_frames(VICTIM_OWNER, victim_frames)
    attacker.flexmem_release(VICTIM_OWNER, victim_frames)  # identity layout: IPA == PA
    for frame in victim_frames.tolist():
        assert attacker.cpu.read(pa(frame), FRAME_SIZE_BYTES) == bytes(FRAME_SIZE_BYTES)
    invariants()


def test_frames_returned_by_the_secure_side_come_back_zeroed(attacker, port, victim_frames):
    record = port.release_frames(VICTIM_OWNER, victim_frames)
    assert record.bytes_zeroed == victim_frames.size * FRAME_SIZE_BYTES
    for frame in victim_frames.tolist():
        assert attacker.cpu.read(pa(frame), 64) == bytes(64)


def test_tee_memory_is_unreachable(attacker, platform):
    tee_pa = platform.soc.layout.tee_base_frame * FRAME_SIZE_BYTES
    with pytest.raises(TranslationFault):
        attacker.cpu.read(tee_pa, 8)
    with pytest.raises(DMAFault):
        attacker.generic_dma.write(tee_pa, b"x")


def test_tzasc_blocks_even_a_mapped_region(attacker, port, free_ipa):
    """Strawman memory: a TZASC region over pages the S2PT still maps."""
    pages = free_ipa(4, start=400)
    port.tzasc_assign(1, int(pages[0]), 4)
    port.secure_write(int(pages[0]) * FRAME_SIZE_BYTES, VICTIM_SECRET)
    with pytest.raises(PermissionFault):
        attacker.cpu.read(int(pages[0]) * FRAME_SIZE_BYTES, 8)
    with pytest.raises(DMAFault):
        attacker.generic_dma.read(int(pages[0]) * FRAME_SIZE_BYTES, 8)
    port.tzasc_release(1)
    assert attacker.cpu.read(int(pages[0]) * FRAME_SIZE_BYTES, 32) == bytes(32)


def test_el2_state_is_unreachable_while_stage2_is_on(attacker, platform):
    el2_pa = platform.monitor.ctx.region.pa_of("normal_pa")
    with pytest.raises(TranslationFault):
        attacker.cpu.write(el2_pa, b"\x00" * 8)
    with pytest.raises(DMAFault):
        attacker.generic_dma.write(el2_pa, b"\x00" * 8)
