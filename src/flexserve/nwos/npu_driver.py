"""The normal-world NPU driver: submits jobs through the NPU's MMIO registers.

The same driver is what Flex-NPU reuses inside the sandbox: it keeps no state a job
depends on (a job is a command buffer handle written to SUBMIT, then DOORBELL), so its
stale normal-mode state is harmless. Its code and data pages are ordinary kernel pages,
registered with the monitor once so the sandbox can map them.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from flexserve.errors import ConfigError, DMAFault, HardwareFault
from flexserve.monitor.platform import NormalWorld
from flexserve.monitor.smc_ids import FunctionId
from flexserve.nwos.kernel import NormalWorldKernel
from flexserve.nwos.owners import KERNEL_OWNER
from flexserve.nwos.page import PageKind
from flexserve.soc.cpu import Stage2CPU
from flexserve.soc.npu import NpuJob, NpuReg, NpuStatus


class JobOutcome(Enum):
    DONE = "done"
    FAULT = "fault"
    ERROR = "error"


class NpuDriver:
    def __init__(self, kernel: NormalWorldKernel, normal: NormalWorld,
                 code_pages: int = 4, data_pages: int = 2) -> None:
        if code_pages < 1 or data_pages < 0:
            raise ConfigError("driver needs >= 1 code page and >= 0 data pages")
        self.normal = normal
        self.code_pages, self.data_pages = code_pages, data_pages
        span = code_pages + data_pages
        order = (span - 1).bit_length()
        self.code_pfn = kernel.alloc_block(KERNEL_OWNER, PageKind.KERNEL, order)
        tail = np.arange(self.code_pfn + span, self.code_pfn + (1 << order), dtype=np.int64)
        if tail.size:
            kernel.free(tail)  # code and data stay adjacent, the rest goes back
        self.jobs_submitted = 0

    def register_with_monitor(self) -> None:
        """FLEXNPU_REGISTER_DRIVER: code then data pages at consecutive IPAs."""
        self.normal.smc_checked(FunctionId.FLEXNPU_REGISTER_DRIVER, self.code_pfn,
                                self.code_pages, self.data_pages)

    def submit(self, job: NpuJob, cpu: Stage2CPU | None = None) -> JobOutcome:
        """Post ``job``, write its handle to SUBMIT and ring the doorbell; wait for status.

        ``cpu`` is the CPU context running the driver: the OS's by default, the sandbox's
        when the secure world reuses the driver.
        """
        cpu = cpu or self.normal.cpu
        base = self.normal.npu_mmio_ipa
        handle = self.normal.npu_post_job(job)
        cpu.write_u64(base + NpuReg.SUBMIT, handle)
        self.jobs_submitted += 1
        try:
            cpu.write_u64(base + NpuReg.DOORBELL, 1)
        except DMAFault:
            return JobOutcome.FAULT
        except HardwareFault:
            return JobOutcome.ERROR
        status = NpuStatus(cpu.read_u64(base + NpuReg.STATUS))
        return {NpuStatus.DONE: JobOutcome.DONE,
                NpuStatus.FAULT: JobOutcome.FAULT}.get(status, JobOutcome.ERROR)
