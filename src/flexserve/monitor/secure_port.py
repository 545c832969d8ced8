"""What the trusted OS calls (secure world only; the normal world has no handle on it).

Frames are named by physical frame number. Every call re-checks ownership in the ledger:
a TA may touch only Flex-Mem frames of its owner id that it has mapped.
"""

from __future__ import annotations

import numpy as np

from flexserve.monitor.args import all_distinct
from flexserve.monitor.core import MonitorContext, refuse
from flexserve.monitor.flexmem import FlexMem
from flexserve.monitor.flexnpu import FlexNpu
from flexserve.monitor.ledger import FLEX_STATES, FrameState
from flexserve.monitor.status import SmcStatus
from flexserve.monitor.tzasc_service import TzascService
from flexserve.soc.constants import (
    FRAME_SHIFT,
    FRAME_SIZE_BYTES,
    byte_segments,
    pages_spanned,
)
from flexserve.soc.cpu import SandboxCPU
from flexserve.soc.npu import NpuJob, NpuMode
from flexserve.soc.work import WorkRecord


class FlexBuffer:
    """A TA's byte-addressed view over an ordered list of its mapped Flex-Mem frames."""

    def __init__(self, port: SecureWorldPort, owner: int, frames: np.ndarray) -> None:
        self.port = port
        self.owner = owner
        self.frames = frames

    @property
    def size_bytes(self) -> int:
        return int(self.frames.size) * FRAME_SIZE_BYTES

    def _pieces(self, offset: int, size_bytes: int) -> list[tuple[int, int, int]]:
        if offset < 0 or size_bytes < 0 or offset + size_bytes > self.size_bytes:
            raise IndexError("FlexBuffer access out of range")
        return [(int(self.frames[page]), inner, chunk)
                for page, inner, chunk in byte_segments(offset, size_bytes)]

    def read(self, offset: int, size_bytes: int) -> bytes:
        return b"".join(self.port.read(self.owner, frame, inner, chunk)
                        for frame, inner, chunk in self._pieces(offset, size_bytes))

    def write(self, offset: int, data: bytes) -> None:
        pos = 0
        for frame, inner, chunk in self._pieces(offset, len(data)):
            self.port.write(self.owner, frame, inner, data[pos:pos + chunk])
            pos += chunk


class SecureWorldPort:
    """Secure-side API of the Flex-Monitor. Work is returned and also summed in ``work``."""

    def __init__(self, ctx: MonitorContext, flexmem: FlexMem, flexnpu: FlexNpu,
                 tzasc: TzascService) -> None:
        self.ctx = ctx
        self._flexmem = flexmem
        self._flexnpu = flexnpu
        self._tzasc = tzasc
        self.work = WorkRecord()

    def _frames(self, frames: object) -> np.ndarray:
        array = self._frames_like(frames)  # private copy
        limit = self.ctx.dram_frames
        if array.size == 0 or array.min() < 0 or array.max() >= limit \
                or not all_distinct(array, limit):
            refuse(SmcStatus.INVALID_PARAMETER)
        return array

    @staticmethod
    def _frames_like(values: object) -> np.ndarray:
        try:
            return np.array(values, dtype=np.int64).ravel()
        except (TypeError, ValueError, OverflowError):
            refuse(SmcStatus.INVALID_PARAMETER)

    def _account(self, record: WorkRecord) -> WorkRecord:
        self.work += record
        return record

    # ----- Flex-Mem -----
    def owned_frames(self, owner: int) -> np.ndarray:
        return self._flexmem.frames_of(owner)

    def frames_at_ipas(self, owner: int, ipa_pages: object) -> np.ndarray:
        """Frames the normal world protected for ``owner`` at these IPA pages (verified)."""
        ipa = self._frames_like(ipa_pages)
        if ipa.size == 0 or ipa.min() < 0 or ipa.max() >= self.ctx.ipa_pages:
            refuse(SmcStatus.INVALID_PARAMETER)
        frames = self.ctx.ledger.ipa_holder[ipa].astype(np.int64)
        if np.any(frames < 0):
            refuse(SmcStatus.DENIED)
        self._flexmem.require_owned(owner, frames, *FLEX_STATES)
        return frames

    def ipas_of(self, owner: int, frames: object) -> np.ndarray:
        """The held IPA page of each frame: what the OS passes to FLEXMEM_RELEASE."""
        array = self._frames(frames)
        self._flexmem.require_owned(owner, array, *FLEX_STATES)
        return self.ctx.ledger.frame_ipa[array].astype(np.int64)

    def map_frames(self, owner: int, frames: object) -> WorkRecord:
        return self._account(self._flexmem.map_into_ta(owner, self._frames(frames)))

    def unmap_frames(self, owner: int, frames: object) -> WorkRecord:
        return self._account(self._flexmem.unmap_from_ta(owner, self._frames(frames)))

    def release_frames(self, owner: int, frames: object) -> WorkRecord:
        """Give frames back to the normal world; the monitor scrubs what was written."""
        return self._account(self._flexmem.release_frames(owner, self._frames(frames)))

    def scrub_frames(self, owner: int, frames: object) -> WorkRecord:
        array = self._frames(frames)
        self._flexmem.require_owned(owner, array, *FLEX_STATES)
        return self._account(self.ctx.soc.memory.zero_frames(array))

    def read_frames(self, owner: int, frames: object) -> np.ndarray:
        array = self._mapped(owner, frames)
        self._account(WorkRecord(bytes_copied=int(array.size) * FRAME_SIZE_BYTES))
        return self.ctx.soc.memory.read_frames(array)

    def write_frames(self, owner: int, frames: object, data: np.ndarray) -> WorkRecord:
        array = self._mapped(owner, frames)
        self.ctx.soc.memory.write_frames(array, data)
        return self._account(WorkRecord(bytes_copied=int(array.size) * FRAME_SIZE_BYTES,
                                        frames_touched=int(array.size)))

    def mark_written(self, owner: int, frames: object) -> None:
        """Timing-only: record that the TA filled these frames (no bytes)."""
        self.ctx.soc.memory.mark_written(self._mapped(owner, frames))

    def read(self, owner: int, frame: int, offset: int, size_bytes: int) -> bytes:
        self._mapped(owner, [frame])
        if offset < 0 or size_bytes < 0 or offset + size_bytes > FRAME_SIZE_BYTES:
            refuse(SmcStatus.INVALID_PARAMETER)
        self._account(WorkRecord(bytes_copied=size_bytes))
        return self.ctx.soc.memory.read_in_frame(frame, offset, size_bytes)

    def write(self, owner: int, frame: int, offset: int, data: bytes) -> None:
        self._mapped(owner, [frame])
        if offset < 0 or offset + len(data) > FRAME_SIZE_BYTES:
            refuse(SmcStatus.INVALID_PARAMETER)
        self._account(WorkRecord(bytes_copied=len(data)))
        self.ctx.soc.memory.write_in_frame(frame, offset, bytes(data))

    def buffer(self, owner: int, frames: object) -> FlexBuffer:
        return FlexBuffer(self, owner, self._mapped(owner, frames))

    def _mapped(self, owner: int, frames: object) -> np.ndarray:
        array = self._frames(frames)
        self._flexmem.require_owned(owner, array, FrameState.FLEX_MAPPED)
        return array

    # ----- shared (normal) memory -----
    def read_shared(self, pa: int, size_bytes: int) -> bytes:
        """Copy bytes out of normal-world memory (e.g. ciphertext the file service loaded)."""
        self._require_normal_range(pa, size_bytes)
        self._account(WorkRecord(bytes_copied=size_bytes))
        return self.ctx.soc.memory.read(pa, size_bytes)

    def write_shared(self, pa: int, data: bytes) -> None:
        self._require_normal_range(pa, len(data))
        self._account(WorkRecord(bytes_copied=len(data)))
        self.ctx.soc.memory.write(pa, bytes(data))

    def check_shared(self, pa: int, size_bytes: int) -> None:
        """Refuse unless ``[pa, pa + size_bytes)`` is ordinary normal-world memory."""
        self._require_normal_range(pa, size_bytes)

    def _require_normal_range(self, pa: int, size_bytes: int) -> None:
        self._flexmem.odp.ensure_enabled()
        if pa < 0 or size_bytes < 0 or pa + size_bytes > self.ctx.dram_frames << FRAME_SHIFT:
            refuse(SmcStatus.INVALID_PARAMETER)
        first, count = pages_spanned(pa, size_bytes)
        frames = np.arange(first, first + count, dtype=np.int64)
        if not self.ctx.ledger.states_are(frames, FrameState.NORMAL):
            refuse(SmcStatus.DENIED)

    # ----- Flex-NPU -----
    def npu_acquire(self, owner: int) -> WorkRecord:
        return self._account(self._flexnpu.acquire(owner))

    def npu_release(self, owner: int) -> WorkRecord:
        return self._account(self._flexnpu.release(owner))

    def npu_sandbox_cpu(self) -> SandboxCPU:
        """Where the reused normal-world driver runs while the NPU is secure."""
        if self._flexnpu.mode is not NpuMode.SECURE:
            refuse(SmcStatus.DENIED)
        return self.ctx.soc.sandbox_cpu

    def npu_post_job(self, job: NpuJob) -> int:
        """Write a command buffer for the NPU; returns the handle the driver submits."""
        return self.ctx.soc.npu.post_command_buffer(job)

    # ----- classic TZASC regions (strawman designs) -----
    def tzasc_assign(self, index: int, base_frame: int, frame_count: int) -> WorkRecord:
        return self._account(self._tzasc.assign(index, base_frame, frame_count))

    def tzasc_extend(self, index: int, extra_frames: int) -> WorkRecord:
        return self._account(self._tzasc.extend(index, extra_frames))

    def tzasc_release(self, index: int) -> WorkRecord:
        return self._account(self._tzasc.release(index))

    def tzasc_read_frames(self, first_frame: int, count: int) -> np.ndarray:
        """Whole frames of a TZASC region, as a ``(count, 4096)`` private copy."""
        frames = self._tzasc.require_assigned_frames(first_frame, count)
        self._account(WorkRecord(bytes_copied=count * FRAME_SIZE_BYTES))
        return self.ctx.soc.memory.read_frames(frames)

    def tzasc_write_frames(self, first_frame: int, data: np.ndarray) -> WorkRecord:
        """Write ``data`` (``(count, 4096)`` uint8) into whole frames of a TZASC region."""
        count = int(data.shape[0]) if data.ndim == 2 else 0
        frames = self._tzasc.require_assigned_frames(first_frame, count)
        self.ctx.soc.memory.write_frames(frames, data)
        return self._account(WorkRecord(bytes_copied=count * FRAME_SIZE_BYTES,
                                        frames_touched=count))

    def secure_read(self, pa: int, size_bytes: int) -> bytes:
        self._tzasc.require_assigned(pa, size_bytes)
        return self.ctx.soc.memory.read(pa, size_bytes)

    def secure_write(self, pa: int, data: bytes) -> None:
        self._tzasc.require_assigned(pa, len(data))
        self.ctx.soc.memory.write(pa, bytes(data))
