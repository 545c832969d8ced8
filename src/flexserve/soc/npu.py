"""The NPU: an MMIO register page, an SRAM window, a job queue, two modes.

Jobs run a caller-supplied kernel (a Python callable standing for the compiled graph the
NPU firmware executes) over buffers the NPU DMAs through the SMMU as stream ``NPU``.
Kernels must be pure functions of their inputs: the NPU hands them copies and keeps only
the outputs it DMAs back (a convention of the emulation, see docs/threat-model.md).

Switching modes is reserved to the monitor (a secure-only control port) and always
scrubs SRAM, registers, the queue and posted command buffers.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from flexserve.errors import DMAFault, HardwareFault
from flexserve.soc.access import Access
from flexserve.soc.constants import FRAME_SIZE_BYTES
from flexserve.soc.dma import DmaMaster
from flexserve.soc.work import WorkRecord

NPU_ID_VALUE = 0x4E505531  # "NPU1"

Kernel = Callable[..., Sequence[object]]


class NpuMode(enum.IntEnum):
    NORMAL = 0
    SECURE = 1


class NpuStatus(enum.IntEnum):
    IDLE = 0
    DONE = 1
    FAULT = 2
    ERROR = 3


class NpuReg(enum.IntEnum):
    """Byte offsets of the 64-bit registers in MMIO page 0."""

    ID = 0x00
    MODE = 0x08
    STATUS = 0x10
    SUBMIT = 0x18
    QUEUE_DEPTH = 0x20
    DOORBELL = 0x28
    JOBS_DONE = 0x30
    LAST_OUTPUT_BYTES = 0x38


#: Offset of the SRAM debug window (pages 1..) inside the MMIO window.
SRAM_WINDOW_OFFSET = FRAME_SIZE_BYTES


@dataclass(frozen=True)
class DmaRange:
    """A buffer the NPU reads or writes, by IOVA."""

    iova: int
    size_bytes: int


@dataclass(frozen=True)
class NpuJob:
    """A command buffer: kernel plus the buffers it consumes and produces."""

    kernel: Kernel
    inputs: tuple[DmaRange, ...]
    outputs: tuple[DmaRange, ...]


class NpuDevice:
    """Register page + SRAM window exposed as MMIO; DMA through ``dma``."""

    def __init__(self, dma: DmaMaster, sram_bytes: int = 64 * 1024) -> None:
        if sram_bytes <= 0 or sram_bytes % FRAME_SIZE_BYTES:
            raise HardwareFault("NPU SRAM must be whole pages")
        self.dma = dma
        self.sram = np.zeros(sram_bytes, dtype=np.uint8)
        self.mmio_page_count = 1 + sram_bytes // FRAME_SIZE_BYTES
        self.mode = NpuMode.NORMAL
        self.work = WorkRecord()
        self._handles = itertools.count(1)
        self._reset_state()

    def _reset_state(self) -> None:
        self.status = NpuStatus.IDLE
        self.queue: list[NpuJob] = []
        self.command_buffers: dict[int, tuple[NpuMode, NpuJob]] = {}
        self.jobs_done = 0
        self.last_output_bytes = 0

    # ----- privileged control port (monitor only) -----
    def set_mode(self, mode: NpuMode) -> WorkRecord:
        """Scrub all internal state, then switch mode."""
        self.sram[:] = 0
        self._reset_state()
        self.mode = mode
        record = WorkRecord(npu_mode_switches=1, bytes_zeroed=int(self.sram.size))
        self.work += record
        return record

    def internal_state_is_clean(self) -> bool:
        return not self.sram.any() and not self.queue and not self.command_buffers \
            and self.jobs_done == 0 and self.last_output_bytes == 0

    # ----- command buffers (job descriptors written by the driver) -----
    def post_command_buffer(self, job: NpuJob) -> int:
        """Stand-in for a descriptor in memory; returns the handle to write to SUBMIT."""
        handle = next(self._handles)
        self.command_buffers[handle] = (self.mode, job)
        return handle

    # ----- MMIO -----
    def mmio_read(self, offset: int, size_bytes: int) -> bytes:
        if offset >= SRAM_WINDOW_OFFSET:
            return self._sram_window_read(offset - SRAM_WINDOW_OFFSET, size_bytes)
        regs = b"".join(self._register(reg).to_bytes(8, "little") for reg in NpuReg)
        page = regs.ljust(FRAME_SIZE_BYTES, b"\0")
        return page[offset:offset + size_bytes]

    def mmio_write(self, offset: int, data: bytes) -> None:
        if offset >= SRAM_WINDOW_OFFSET:
            self._sram_window_write(offset - SRAM_WINDOW_OFFSET, data)
            return
        value = int.from_bytes(data[:8].ljust(8, b"\0"), "little")
        if offset == NpuReg.SUBMIT:
            self._submit(value)
        elif offset == NpuReg.DOORBELL:
            self.run_queue()

    def _register(self, reg: NpuReg) -> int:
        values = {NpuReg.ID: NPU_ID_VALUE, NpuReg.MODE: int(self.mode),
                  NpuReg.STATUS: int(self.status), NpuReg.QUEUE_DEPTH: len(self.queue),
                  NpuReg.JOBS_DONE: self.jobs_done,
                  NpuReg.LAST_OUTPUT_BYTES: self.last_output_bytes}
        return values.get(reg, 0)

    def _sram_window_read(self, offset: int, size_bytes: int) -> bytes:
        if self.mode is NpuMode.SECURE:
            return bytes(size_bytes)  # debug window closed in secure mode
        return self.sram[offset:offset + size_bytes].tobytes().ljust(size_bytes, b"\0")

    def _sram_window_write(self, offset: int, data: bytes) -> None:
        if self.mode is NpuMode.SECURE:
            return
        end = min(offset + len(data), self.sram.size)
        self.sram[offset:end] = np.frombuffer(data[:end - offset], dtype=np.uint8)

    def _submit(self, handle: int) -> None:
        entry = self.command_buffers.pop(handle, None)
        if entry is None or entry[0] is not self.mode:
            self.status = NpuStatus.ERROR
            return
        self.queue.append(entry[1])

    # ----- execution -----
    def run_queue(self) -> WorkRecord:
        """Run every queued job in order; a fault aborts the rest of the queue."""
        record = WorkRecord()
        jobs, self.queue = self.queue, []
        if not jobs:
            return record  # nothing to run: STATUS keeps reporting the last outcome
        for job in jobs:
            try:
                record += self._run(job)
            except DMAFault:
                self.status = NpuStatus.FAULT
                raise
            except Exception as error:
                self.status = NpuStatus.ERROR
                raise HardwareFault("NPU: kernel failed") from error
        self.status = NpuStatus.DONE
        self.work += record
        return record

    def _run(self, job: NpuJob) -> WorkRecord:
        for buffer in job.outputs:  # fail before reading anything
            self.dma.check(buffer.iova, buffer.size_bytes, Access.WRITE)
        if self.dma.timing_only:
            return self._run_metadata(job)
        inputs = [np.frombuffer(self.dma.read(b.iova, b.size_bytes), dtype=np.uint8)
                  for b in job.inputs]
        self._keep_residue(inputs)
        outputs = self._call_kernel(job, inputs)
        self._keep_residue(outputs)
        record = WorkRecord(npu_jobs=1, bytes_dma=sum(b.size_bytes for b in job.inputs))
        for out, buffer in zip(outputs, job.outputs, strict=True):
            record += self.dma.write(buffer.iova, out.tobytes())
        self._job_done(job)
        return record

    @staticmethod
    def _call_kernel(job: NpuJob, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the kernel on copies; its outputs must match the descriptor byte for byte."""
        results = job.kernel(*[array.copy() for array in inputs])
        outputs = [np.ascontiguousarray(o).view(np.uint8).ravel() for o in results]
        sizes = [b.size_bytes for b in job.outputs]
        if [out.size for out in outputs] != sizes:
            raise HardwareFault("NPU: kernel outputs do not match the descriptor")
        return outputs

    def _job_done(self, job: NpuJob) -> None:
        self.jobs_done += 1
        self.last_output_bytes = sum(b.size_bytes for b in job.outputs)

    def _run_metadata(self, job: NpuJob) -> WorkRecord:
        record = WorkRecord(npu_jobs=1)
        for buffer in job.inputs:
            record += self.dma.read_metadata(buffer.iova, buffer.size_bytes)
        for buffer in job.outputs:
            record += self.dma.write_metadata(buffer.iova, buffer.size_bytes)
        self._job_done(job)
        return record

    def _keep_residue(self, arrays: list[np.ndarray]) -> None:
        """Operands pass through SRAM: the most recent bytes stay there until scrubbed."""
        flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.uint8)
        tail = flat[-self.sram.size:]
        self.sram[:tail.size] = tail

