"""A booted device: hardware + Flex-Monitor + the two worlds' entry points.

``Platform.normal`` is everything the normal-world OS (and so the attacker) can touch:
its CPU (through its stage-2), the DMA masters it programs, flash files, and SMCs.
``Platform.secure`` is what the trusted OS calls. Normal-world code must never be handed
``Platform.secure``, ``Platform.monitor`` or ``Platform.soc``.
"""

from __future__ import annotations

import numpy as np

from flexserve.errors import SMCError
from flexserve.monitor.core import MonitorConfig
from flexserve.monitor.ledger import FrameState
from flexserve.monitor.monitor import FlexMonitor
from flexserve.monitor.secure_port import SecureWorldPort
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcResult
from flexserve.soc.board import BoardConfig, MemoryLayout, SoC
from flexserve.soc.constants import FRAME_SHIFT
from flexserve.soc.cpu import NormalWorldCPU
from flexserve.soc.dma import DmaMaster
from flexserve.soc.flash import FlashController, FlashStorage
from flexserve.soc.npu import NpuJob
from flexserve.soc.work import WorkRecord


class NormalWorld:
    """The normal world's whole API surface.

    ``ram_ranges`` is the boot memory map (like a device-tree memory node minus its
    reserved-memory carve-outs): ``(first_ipa_page, page_count)`` runs of normal RAM,
    identity-mapped (IPA == PA) at boot.
    """

    def __init__(self, soc: SoC, monitor: FlexMonitor) -> None:
        self._dispatcher = monitor.dispatcher
        self._npu = soc.npu
        self.cpu: NormalWorldCPU = soc.normal_cpu
        self.flash: FlashController = soc.flash
        self.storage: FlashStorage = soc.flash.storage
        self.generic_dma: DmaMaster = soc.generic_dma
        self.layout: MemoryLayout = soc.layout
        self.ram_ranges: list[tuple[int, int]] = _runs(
            monitor.ctx.ledger.state == FrameState.NORMAL)

    @property
    def npu_mmio_ipa(self) -> int:
        return self.layout.npu_mmio_page << FRAME_SHIFT

    def smc(self, fid: object, *args: object, payload: object = None) -> SmcResult:
        """Issue an SMC; never raises except SecurityError (monitor found tampering)."""
        return self._dispatcher.dispatch(fid, tuple(args), payload)

    def smc_checked(self, fid: object, *args: object, payload: object = None) -> SmcResult:
        """Like :meth:`smc` but raises :class:`SMCError` unless the call succeeded."""
        result = self.smc(fid, *args, payload=payload)
        if not result.ok:
            raise SMCError(int(result.status), f"{fid!r}: {result.status.name}")
        return result

    def flexmem_protect(self, owner: int, ipa_pages: np.ndarray) -> WorkRecord:
        pages = np.asarray(ipa_pages, dtype=np.int64)
        return self.smc_checked(FunctionId.FLEXMEM_PROTECT, owner, int(pages.size),
                                payload=pages).work

    def flexmem_release(self, owner: int, ipa_pages: np.ndarray) -> WorkRecord:
        pages = np.asarray(ipa_pages, dtype=np.int64)
        return self.smc_checked(FunctionId.FLEXMEM_RELEASE, owner, int(pages.size),
                                payload=pages).work

    def npu_post_job(self, job: NpuJob) -> int:
        """Write an NPU command buffer; returns the handle to write to ``NpuReg.SUBMIT``."""
        return self._npu.post_command_buffer(job)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(first_page, page_count)`` of every run of True in ``mask``."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


class SecureWorld:
    """The trusted OS's view: the monitor's secure port."""

    def __init__(self, port: SecureWorldPort) -> None:
        self.port = port


class Platform:
    def __init__(self, board: BoardConfig | None = None,
                 monitor: MonitorConfig | None = None) -> None:
        self.soc = SoC(board)
        self.monitor = FlexMonitor(self.soc, monitor)
        self.normal = NormalWorld(self.soc, self.monitor)
        self.secure = SecureWorld(self.monitor.secure_port)


def boot_platform(board: BoardConfig | None = None,
                  monitor: MonitorConfig | None = None) -> Platform:
    """Build the hardware, boot the Flex-Monitor, return both worlds' entry points."""
    return Platform(board, monitor)
