"""Flex-NPU: time-share the NPU between the normal world and a secure owner.

Secure entry: the NPU MMIO and the registered driver pages leave the normal S2PT and
enter the sandbox S2PT (driver code RX, driver data RW, MMIO RW); the NPU is scrubbed and
switched to secure mode; its SMMU stream is pointed at the owner's Flex-Mem frames.
Exit reverses it, scrubbing the NPU first. The OS may recall the NPU at any time.
"""

from __future__ import annotations

import numpy as np

from flexserve.monitor.args import check_range
from flexserve.monitor.core import MonitorContext, refuse
from flexserve.monitor.el2_region import Header
from flexserve.monitor.flexmem import DRAM_PERM, check_owner
from flexserve.monitor.ledger import NO_OWNER, FrameState
from flexserve.monitor.npu_view import FlexMemDmaView
from flexserve.monitor.ondemand import OnDemandProtection
from flexserve.monitor.status import SmcStatus
from flexserve.soc.access import Perm, World
from flexserve.soc.npu import NpuMode
from flexserve.soc.smmu import StreamId
from flexserve.soc.work import WorkRecord

MMIO_PERM = Perm.RW


class FlexNpu:
    def __init__(self, ctx: MonitorContext, odp: OnDemandProtection) -> None:
        self.ctx = ctx
        self.odp = odp

    @property
    def mode(self) -> NpuMode:
        return self.ctx.soc.npu.mode

    @property
    def owner(self) -> int:
        return int(self.ctx.region.header[Header.NPU_OWNER])

    # ----- normal world -----
    def register_driver(self, ipa_page: int, code_pages: int, data_pages: int) -> WorkRecord:
        """Name the IPA range holding the NPU driver's code then data pages."""
        limit = self.ctx.config.max_npu_driver_pages
        check_range(code_pages, 1, limit)
        check_range(data_pages, 0, limit - code_pages)
        check_range(ipa_page, 0, self.ctx.dram_frames - code_pages - data_pages)
        record = self.odp.ensure_enabled()
        if self.mode is NpuMode.SECURE:
            refuse(SmcStatus.BUSY)
        header = self.ctx.region.header
        header[Header.NPU_DRIVER_IPA] = ipa_page
        header[Header.NPU_DRIVER_CODE_PAGES] = code_pages
        header[Header.NPU_DRIVER_DATA_PAGES] = data_pages
        return record

    def recall(self) -> WorkRecord:
        """The OS takes the NPU back, whoever holds it."""
        self.ctx.require_unlocked()
        if self.mode is NpuMode.NORMAL:
            refuse(SmcStatus.NOT_REQUIRED)
        return self._exit_secure()

    # ----- secure world -----
    def acquire(self, owner: int) -> WorkRecord:
        check_owner(owner)
        record = self.odp.ensure_enabled()
        if self.mode is NpuMode.SECURE:
            refuse(SmcStatus.BUSY)
        code_ipas, data_ipas = self._driver_ipas()
        driver_ipas = np.concatenate([code_ipas, data_ipas])
        frames = self.ctx.normal_s2.pa_pages[driver_ipas].astype(np.int64)
        if np.any(frames < 0) or np.any(frames >= self.ctx.dram_frames) or \
                not self.ctx.ledger.states_are(frames, FrameState.NORMAL):
            refuse(SmcStatus.DENIED)
        return record + self._enter_secure(owner, code_ipas, data_ipas, frames)

    def release(self, owner: int) -> WorkRecord:
        check_owner(owner)
        self.ctx.require_unlocked()
        if self.mode is NpuMode.NORMAL:
            refuse(SmcStatus.NOT_REQUIRED)
        if owner != self.owner:
            refuse(SmcStatus.DENIED)
        return self._exit_secure()

    # ----- mechanism -----
    def _driver_ipas(self) -> tuple[np.ndarray, np.ndarray]:
        header = self.ctx.region.header
        code_pages = int(header[Header.NPU_DRIVER_CODE_PAGES])
        if code_pages <= 0:
            refuse(SmcStatus.DENIED)
        base = int(header[Header.NPU_DRIVER_IPA])
        data_pages = int(header[Header.NPU_DRIVER_DATA_PAGES])
        code = np.arange(base, base + code_pages, dtype=np.int64)
        data = np.arange(base + code_pages, base + code_pages + data_pages, dtype=np.int64)
        return code, data

    def _enter_secure(self, owner: int, code_ipas: np.ndarray, data_ipas: np.ndarray,
                      frames: np.ndarray) -> WorkRecord:
        ctx = self.ctx
        mmio = ctx.mmio_ipa_pages
        driver_ipas = np.concatenate([code_ipas, data_ipas])
        changed = ctx.normal_s2.unmap_pages(driver_ipas) + ctx.normal_s2.unmap_pages(mmio)
        ctx.ledger.hold(frames, FrameState.NPU_SANDBOX, NO_OWNER)
        ctx.sandbox_s2.map_pages(code_ipas, frames[:code_ipas.size], Perm.RX)
        ctx.sandbox_s2.map_pages(data_ipas, frames[code_ipas.size:], Perm.RW)
        ctx.sandbox_s2.map_pages(mmio, mmio, MMIO_PERM)
        record = ctx.soc.npu.set_mode(NpuMode.SECURE)
        ctx.soc.smmu.configure(StreamId.NPU, FlexMemDmaView(ctx.ledger, owner), World.SECURE)
        ctx.region.header[Header.NPU_OWNER] = owner
        sandbox_entries = int(driver_ipas.size + mmio.size)
        return record + WorkRecord(s2pt_entries_changed=changed + sandbox_entries,
                                   smmu_entries_changed=1, world_switches=2,
                                   tlb_invalidations=ctx.tlbi_count(changed) + 1)  # + NPU stream

    def _exit_secure(self) -> WorkRecord:
        ctx = self.ctx
        record = ctx.soc.npu.set_mode(NpuMode.NORMAL)
        assert ctx.soc.normal_regime is not None
        ctx.soc.smmu.configure(StreamId.NPU, ctx.soc.normal_regime, World.NORMAL)
        sandbox_entries = ctx.sandbox_s2.clear()
        frames = np.flatnonzero(ctx.ledger.state == FrameState.NPU_SANDBOX)
        ipa_pages = ctx.ledger.unhold(frames)
        ctx.normal_s2.map_pages(ipa_pages, frames, DRAM_PERM)
        mmio = ctx.mmio_ipa_pages
        ctx.normal_s2.map_pages(mmio, mmio, MMIO_PERM)
        ctx.region.header[Header.NPU_OWNER] = NO_OWNER
        restored = int(frames.size + mmio.size)
        return record + WorkRecord(s2pt_entries_changed=restored + sandbox_entries,
                                   smmu_entries_changed=1, world_switches=2,
                                   tlb_invalidations=2)  # sandbox VMID + NPU stream
