"""The Flex-Monitor: boot-time setup and the assembly of its services."""

from __future__ import annotations

import numpy as np

from flexserve.errors import ConfigError, HardwareFault
from flexserve.monitor.core import MonitorConfig, MonitorContext
from flexserve.monitor.dispatch import SmcDispatcher
from flexserve.monitor.el2_region import El2Region
from flexserve.monitor.flexmem import DRAM_PERM, FlexMem
from flexserve.monitor.flexnpu import MMIO_PERM, FlexNpu
from flexserve.monitor.guest_s2 import GuestStage2
from flexserve.monitor.ledger import FrameState
from flexserve.monitor.ondemand import OnDemandProtection
from flexserve.monitor.secure_port import SecureWorldPort
from flexserve.monitor.tzasc_service import TzascService
from flexserve.soc.board import SoC


class FlexMonitor:
    """EL2 + EL3 firmware of one SoC. ``dispatcher`` is the normal world's only entry."""

    def __init__(self, soc: SoC, config: MonitorConfig | None = None) -> None:
        self.soc = soc
        self.config = config or MonitorConfig()
        soc.secure_tee_region()
        layout = soc.layout
        try:
            region = El2Region(soc.memory, layout.el2_base_frame, layout.dram_frames,
                               layout.ipa_pages)
        except HardwareFault as fault:
            raise ConfigError("DRAM too small for the EL2 region") from fault
        self.ctx = MonitorContext(soc, self.config, region)
        self._init_ledger_and_tables()
        soc.install_stage2(self.ctx.normal_s2, self.ctx.sandbox_s2)
        self.odp = OnDemandProtection(self.ctx)
        self.flexmem = FlexMem(self.ctx, self.odp)
        self.flexnpu = FlexNpu(self.ctx, self.odp)
        self.guest_s2 = GuestStage2(self.ctx, self.odp)
        self.tzasc = TzascService(self.ctx, self.odp)
        self.dispatcher = SmcDispatcher(self.flexmem, self.guest_s2, self.flexnpu, self.odp)
        self.secure_port = SecureWorldPort(self.ctx, self.flexmem, self.flexnpu, self.tzasc)

    def reserved_frames(self) -> np.ndarray:
        """Frames that are never normal memory: the TEE region and the EL2 region."""
        layout = self.soc.layout
        tee = np.arange(layout.tee_base_frame, layout.tee_base_frame + layout.tee_frames)
        return np.concatenate([tee, self.ctx.region.frames])

    def _init_ledger_and_tables(self) -> None:
        ctx = self.ctx
        ctx.ledger.reset()
        ctx.ledger.state[self.reserved_frames()] = FrameState.RESERVED
        ctx.normal_s2.clear()
        ctx.sandbox_s2.clear()
        normal = np.flatnonzero(ctx.ledger.state == FrameState.NORMAL)
        ctx.normal_s2.map_pages(normal, normal, DRAM_PERM)
        ctx.ledger.frame_ipa[normal] = normal
        mmio = ctx.mmio_ipa_pages
        ctx.normal_s2.map_pages(mmio, mmio, MMIO_PERM)
