"""Physical DRAM made of 4 KiB frames, sparsely backed.

A frame costs host memory only once a non-zero byte is written to it: untouched and
scrubbed frames read as zeros and have no backing array. Firmware regions (the EL2
image, its data and stage-2 tables) are *dense*: one contiguous host buffer whose numpy
views the firmware uses directly, so a write through the bus lands in the live tables.

In ``BackingMode.TIMING_ONLY`` frames carry metadata only (the ``written`` flags used to
price scrubbing); byte reads and writes outside dense regions raise :class:`ConfigError`
by design, so a timing-only run can never silently compute on zeros.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from flexserve.errors import ConfigError, HardwareFault
from flexserve.soc.constants import FRAME_SHIFT, FRAME_SIZE_BYTES, byte_segments
from flexserve.soc.work import WorkRecord


class BackingMode(enum.Enum):
    """Whether frames hold real bytes or only metadata."""

    BYTES = "bytes"
    TIMING_ONLY = "timing-only"


@dataclass(frozen=True)
class DenseRegion:
    """A contiguous frame range backed by one host buffer (firmware memory)."""

    first_frame: int
    frame_count: int
    buffer: np.ndarray

    def contains(self, frame: int) -> bool:
        return self.first_frame <= frame < self.first_frame + self.frame_count


class PhysicalMemory:
    """DRAM frames ``[0, frame_count)``; all addresses here are physical."""

    def __init__(self, size_bytes: int, backing: BackingMode = BackingMode.BYTES) -> None:
        if size_bytes <= 0 or size_bytes % FRAME_SIZE_BYTES:
            raise ConfigError("memory size must be a positive multiple of 4 KiB")
        self.frame_count = size_bytes >> FRAME_SHIFT
        self.backing = backing
        self.written = np.zeros(self.frame_count, dtype=bool)
        self._frames: dict[int, np.ndarray] = {}
        self._dense: list[DenseRegion] = []

    @property
    def size_bytes(self) -> int:
        return self.frame_count << FRAME_SHIFT

    @property
    def backed_frame_count(self) -> int:
        """Frames that currently cost host memory (sparse frames only)."""
        return len(self._frames)

    # ----- dense firmware regions -----
    def add_dense_region(self, first_frame: int, frame_count: int) -> np.ndarray:
        """Back ``frame_count`` frames by one zeroed host buffer and return it."""
        self._check_range(first_frame, frame_count)
        for region in self._dense:
            if first_frame < region.first_frame + region.frame_count and \
                    region.first_frame < first_frame + frame_count:
                raise ConfigError("dense regions overlap")
        buffer = np.zeros(frame_count * FRAME_SIZE_BYTES, dtype=np.uint8)
        self._dense.append(DenseRegion(first_frame, frame_count, buffer))
        return buffer

    def _dense_for(self, frame: int) -> DenseRegion | None:
        for region in self._dense:
            if region.contains(frame):
                return region
        return None

    # ----- checks -----
    def _check_range(self, first_frame: int, frame_count: int) -> None:
        if first_frame < 0 or frame_count < 0 or first_frame + frame_count > self.frame_count:
            raise HardwareFault("physical frame range outside DRAM")

    def check_frames(self, frames: np.ndarray) -> None:
        """Raise :class:`HardwareFault` unless every frame number is inside DRAM."""
        if frames.size and (frames.min() < 0 or frames.max() >= self.frame_count):
            raise HardwareFault("physical frame outside DRAM")

    def _require_bytes(self, frame: int) -> None:
        if self.backing is BackingMode.TIMING_ONLY and self._dense_for(frame) is None:
            raise ConfigError("timing-only memory holds no bytes")

    # ----- one frame -----
    def _frame_view(self, frame: int, create: bool) -> np.ndarray | None:
        region = self._dense_for(frame)
        if region is not None:
            start = (frame - region.first_frame) * FRAME_SIZE_BYTES
            return region.buffer[start:start + FRAME_SIZE_BYTES]
        page = self._frames.get(frame)
        if page is None and create:
            page = np.zeros(FRAME_SIZE_BYTES, dtype=np.uint8)
            self._frames[frame] = page
        return page

    def read_in_frame(self, frame: int, offset: int, size_bytes: int) -> bytes:
        """Bytes ``[offset, offset + size_bytes)`` of one frame."""
        self._check_range(frame, 1)
        self._require_bytes(frame)
        page = self._frame_view(frame, create=False)
        if page is None:
            return bytes(size_bytes)
        return page[offset:offset + size_bytes].tobytes()

    def write_in_frame(self, frame: int, offset: int, data: bytes) -> None:
        """Write ``data`` into one frame at ``offset`` (must not cross the frame end)."""
        self._check_range(frame, 1)
        self._require_bytes(frame)
        if offset + len(data) > FRAME_SIZE_BYTES:
            raise HardwareFault("write crosses a frame boundary")
        page = self._frame_view(frame, create=True)
        assert page is not None
        page[offset:offset + len(data)] = np.frombuffer(data, dtype=np.uint8)
        self.written[frame] = True

    # ----- byte ranges -----
    def read(self, pa: int, size_bytes: int) -> bytes:
        """Read a physical byte range (may span frames)."""
        out = bytearray()
        for frame, offset, chunk in byte_segments(pa, size_bytes):
            out += self.read_in_frame(frame, offset, chunk)
        return bytes(out)

    def write(self, pa: int, data: bytes) -> None:
        """Write a physical byte range (may span frames)."""
        pos = 0
        for frame, offset, chunk in byte_segments(pa, len(data)):
            self.write_in_frame(frame, offset, data[pos:pos + chunk])
            pos += chunk

    # ----- whole frames, vectorized over frame arrays -----
    def read_frames(self, frames: np.ndarray) -> np.ndarray:
        """Contents of ``frames`` as a ``(len(frames), 4096)`` uint8 array."""
        frames = np.asarray(frames, dtype=np.int64)
        self.check_frames(frames)
        out = np.zeros((frames.size, FRAME_SIZE_BYTES), dtype=np.uint8)
        for row in np.flatnonzero(self.written[frames]):
            frame = int(frames[row])
            self._require_bytes(frame)
            page = self._frame_view(frame, create=False)
            if page is not None:
                out[row] = page
        if self.backing is BackingMode.TIMING_ONLY:
            for frame in frames[~self.written[frames]]:
                self._require_bytes(int(frame))
        return out

    def write_frames(self, frames: np.ndarray, data: np.ndarray) -> None:
        """Write whole frames; ``data`` has shape ``(len(frames), 4096)``."""
        frames = np.asarray(frames, dtype=np.int64)
        self.check_frames(frames)
        data = np.asarray(data, dtype=np.uint8).reshape(frames.size, FRAME_SIZE_BYTES)
        for row, frame in enumerate(frames.tolist()):
            self._require_bytes(frame)
            page = self._frame_view(frame, create=True)
            assert page is not None
            page[:] = data[row]
        self.written[frames] = True

    def mark_written(self, frames: np.ndarray) -> None:
        """Record that ``frames`` now hold data without storing bytes (timing-only mode)."""
        frames = np.asarray(frames, dtype=np.int64)
        self.check_frames(frames)
        self.written[frames] = True

    def zero_frames(self, frames: np.ndarray) -> WorkRecord:
        """Scrub ``frames``; only frames that were written cost work."""
        frames = np.asarray(frames, dtype=np.int64)
        self.check_frames(frames)
        selected = np.zeros(self.frame_count, dtype=bool)
        selected[frames] = True
        dirty = np.flatnonzero(selected & self.written)
        for region in self._dense:
            inside = dirty[(dirty >= region.first_frame)
                           & (dirty < region.first_frame + region.frame_count)]
            for frame in inside.tolist():
                start = (frame - region.first_frame) * FRAME_SIZE_BYTES
                region.buffer[start:start + FRAME_SIZE_BYTES] = 0
        self._drop_sparse(selected)
        self.written[dirty] = False
        return WorkRecord(frames_touched=int(dirty.size),
                          bytes_zeroed=int(dirty.size) * FRAME_SIZE_BYTES)

    def _drop_sparse(self, selected: np.ndarray) -> None:
        """Free the backing of every sparse frame whose ``selected`` flag is set."""
        for frame in [f for f in self._frames if selected[f]]:
            del self._frames[frame]

    def frames_are_zero(self, frames: np.ndarray) -> bool:
        """True when every frame in ``frames`` holds only zero bytes (or was never written)."""
        frames = np.asarray(frames, dtype=np.int64)
        self.check_frames(frames)
        for frame in frames[self.written[frames]].tolist():
            page = self._frame_view(frame, create=False)
            if page is None:
                if self.backing is BackingMode.TIMING_ONLY:
                    return False
                continue
            if page.any():
                return False
        return True

