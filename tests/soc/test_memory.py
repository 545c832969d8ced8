from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import ConfigError, HardwareFault
from flexserve.soc.constants import FRAME_SIZE_BYTES, GIB, MIB
from flexserve.soc.memory import BackingMode, PhysicalMemory


def test_untouched_frames_read_zero_and_cost_nothing():
    memory = PhysicalMemory(16 * GIB)
    assert memory.read(5 * GIB, 32) == bytes(32)
    assert memory.backed_frame_count == 0


def test_writes_span_frames_and_only_touched_frames_are_backed():
    memory = PhysicalMemory(1 * MIB)
    memory.write(FRAME_SIZE_BYTES - 3, b"abcdef")
    assert memory.read(FRAME_SIZE_BYTES - 3, 6) == b"abcdef"
    assert memory.backed_frame_count == 2


def test_zero_frames_scrubs_and_frees():
    memory = PhysicalMemory(1 * MIB)
    memory.write(0, b"x" * 10)
    record = memory.zero_frames(np.array([0, 1]))
    assert record.bytes_zeroed == FRAME_SIZE_BYTES  # frame 1 was never written
    assert memory.read(0, 10) == bytes(10)
    assert memory.backed_frame_count == 0


def test_whole_frame_read_write():
    memory = PhysicalMemory(1 * MIB)
    data = np.arange(2 * FRAME_SIZE_BYTES, dtype=np.uint32).astype(np.uint8).reshape(2, -1)
    memory.write_frames(np.array([7, 3]), data)
    assert np.array_equal(memory.read_frames(np.array([7, 3])), data)
    assert not memory.frames_are_zero(np.array([3]))


def test_dense_region_is_live_host_buffer():
    memory = PhysicalMemory(1 * MIB)
    buffer = memory.add_dense_region(10, 2)
    memory.write(10 * FRAME_SIZE_BYTES + 1, b"\x07")
    assert buffer[1] == 7
    buffer[FRAME_SIZE_BYTES] = 9
    assert memory.read(11 * FRAME_SIZE_BYTES, 1) == b"\x09"
    with pytest.raises(ConfigError):
        memory.add_dense_region(11, 1)


def test_timing_only_mode_rejects_bytes_but_keeps_metadata():
    memory = PhysicalMemory(1 * MIB, BackingMode.TIMING_ONLY)
    with pytest.raises(ConfigError):
        memory.write(0, b"x")
    with pytest.raises(ConfigError):
        memory.read(0, 1)
    memory.mark_written(np.array([1, 2]))
    assert memory.zero_frames(np.array([1, 2, 3])).bytes_zeroed == 2 * FRAME_SIZE_BYTES
    dense = memory.add_dense_region(8, 1)
    memory.write(8 * FRAME_SIZE_BYTES, b"fw")  # firmware memory is always byte-backed
    assert dense[:2].tobytes() == b"fw"


def test_out_of_range_frames_fault():
    memory = PhysicalMemory(1 * MIB)
    with pytest.raises(HardwareFault):
        memory.read(1 * MIB, 1)
    with pytest.raises(HardwareFault):
        memory.zero_frames(np.array([-1]))
