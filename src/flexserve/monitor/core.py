"""State shared by the monitor's services, and the refusal primitive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from flexserve.errors import SMCError
from flexserve.monitor.el2_region import El2Region
from flexserve.monitor.ledger import FrameLedger
from flexserve.monitor.status import SmcStatus
from flexserve.soc.board import SoC
from flexserve.soc.stage2 import Stage2Table


@dataclass(frozen=True)
class MonitorConfig:
    """Policy knobs of the firmware. Values marked [ours] are not given by the paper."""

    #: [ours] idle time after which stage-2 may be switched off (on-demand protection).
    idle_window_ms: int = 10_000
    #: [ours] above this many pages one whole-VMID TLBI replaces per-page TLBIs.
    tlbi_range_threshold_pages: int = 64
    #: [ours] most pages an NPU driver registration may cover.
    max_npu_driver_pages: int = 4096


def refuse(status: SmcStatus) -> NoReturn:
    """Abort the current call with ``status``; nothing has been changed yet."""
    raise SMCError(int(status), f"SMC refused: {status.name}")


class MonitorContext:
    """Everything the EL2/EL3 services operate on."""

    def __init__(self, soc: SoC, config: MonitorConfig, region: El2Region) -> None:
        self.soc = soc
        self.config = config
        self.region = region
        self.ledger: FrameLedger = region.ledger()
        self.normal_s2: Stage2Table = region.normal_table()
        self.sandbox_s2: Stage2Table = region.sandbox_table()
        self.locked = False

    @property
    def dram_frames(self) -> int:
        return self.soc.layout.dram_frames

    @property
    def ipa_pages(self) -> int:
        return self.normal_s2.page_count

    @property
    def mmio_ipa_pages(self) -> np.ndarray:
        """The NPU MMIO window sits at IPA == PA in the normal world."""
        layout = self.soc.layout
        return np.arange(layout.npu_mmio_page, layout.npu_mmio_page + layout.npu_mmio_pages)

    def require_unlocked(self) -> None:
        if self.locked:
            refuse(SmcStatus.DENIED)

    def tlbi_count(self, pages: int) -> int:
        """TLB maintenance for ``pages`` changed entries, on the CPU and on the SMMU."""
        if pages <= 0:
            return 0
        per_agent = pages if pages <= self.config.tlbi_range_threshold_pages else 1
        return 2 * per_agent
