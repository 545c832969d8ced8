from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import SMCError
from flexserve.monitor.status import SmcStatus
from flexserve.soc.constants import FRAME_SIZE_BYTES

OWNER = 3


@pytest.fixture
def frames(attacker, port, free_ipa):
    ipa = free_ipa(3)[::-1].copy()  # any order, no contiguity needed
    attacker.flexmem_protect(OWNER, ipa)
    frames = port.frames_at_ipas(OWNER, ipa)
    port.map_frames(OWNER, frames)
    return frames


def test_flex_buffer_spans_scattered_frames(port, frames):
    buffer = port.buffer(OWNER, frames)
    data = bytes(range(256)) * 30
    buffer.write(FRAME_SIZE_BYTES - 100, data)
    assert buffer.read(FRAME_SIZE_BYTES - 100, len(data)) == data
    assert buffer.size_bytes == 3 * FRAME_SIZE_BYTES
    with pytest.raises(IndexError):
        buffer.read(buffer.size_bytes - 1, 2)


def test_whole_frame_access_and_scrub(port, frames):
    data = np.full((3, FRAME_SIZE_BYTES), 0xAB, dtype=np.uint8)
    port.write_frames(OWNER, frames, data)
    assert np.array_equal(port.read_frames(OWNER, frames), data)
    assert port.scrub_frames(OWNER, frames).bytes_zeroed == 3 * FRAME_SIZE_BYTES
    assert not port.read_frames(OWNER, frames).any()
    # already clean: release has nothing left to zero
    assert port.release_frames(OWNER, frames).bytes_zeroed == 0


def test_unmapped_frames_are_not_accessible_to_the_ta(port, frames):
    port.unmap_frames(OWNER, frames[:1])
    with pytest.raises(SMCError) as refusal:
        port.read(OWNER, int(frames[0]), 0, 1)
    assert refusal.value.code == SmcStatus.DENIED


def test_other_owner_cannot_touch_frames(port, frames):
    with pytest.raises(SMCError):
        port.read(OWNER + 1, int(frames[0]), 0, 1)
    with pytest.raises(SMCError):
        port.map_frames(OWNER + 1, frames)


def test_frame_arguments_are_validated(port, frames):
    for bad in ([], [-1], [frames[0], frames[0]], [1 << 40]):
        with pytest.raises(SMCError) as refusal:
            port.map_frames(OWNER, bad)
        assert refusal.value.code == SmcStatus.INVALID_PARAMETER


def test_shared_memory_is_normal_only(attacker, port, frames, platform):
    attacker.cpu.write(0x2000, b"ciphertext")
    assert port.read_shared(0x2000, 10) == b"ciphertext"
    with pytest.raises(SMCError):
        port.read_shared(int(frames[0]) * FRAME_SIZE_BYTES, 8)
    with pytest.raises(SMCError):
        port.read_shared(platform.soc.layout.tee_base_frame * FRAME_SIZE_BYTES, 8)


def test_tzasc_regions_for_strawman(attacker, port, free_ipa, invariants):
    base = int(free_ipa(1, start=100)[0])
    port.tzasc_assign(2, base, 8)
    invariants()
    with pytest.raises(SMCError) as busy:
        port.tzasc_assign(2, base + 20, 1)
    assert busy.value.code == SmcStatus.BUSY
    with pytest.raises(SMCError):
        port.tzasc_assign(0, base + 20, 1)  # region 0 is the TEE's
    assert attacker.smc(0xC2000100, 1, 1, payload=[base]).status is SmcStatus.DENIED
    port.tzasc_release(2)
    invariants()


def test_cooperative_reclaim_round_trip(attacker, port, frames, invariants):
    port.write(OWNER, int(frames[0]), 0, b"kv")
    port.unmap_frames(OWNER, frames)
    ipa_pages = port.ipas_of(OWNER, frames)
    record = attacker.flexmem_release(OWNER, ipa_pages)
    assert record.bytes_zeroed == FRAME_SIZE_BYTES
    assert attacker.cpu.read(int(ipa_pages[0]) * FRAME_SIZE_BYTES, 2) == bytes(2)
    assert port.owned_frames(OWNER).size == 0
    invariants()
