"""Guest stage-2 layout hypercalls: the normal OS may rearrange its own IPA space.

[ours] Like pKVM's host share/unshare calls, the OS can detach normal frames from the
IPA space and attach them elsewhere. The monitor allows this only for NORMAL DRAM frames
outside TZASC regions, never at IPAs that are held for Flex-Mem or sandbox frames, never
over the device window, and never as an alias (a frame has at most one IPA). This is the
path a compromised kernel would use to "remap" a protected frame; it is refused.
"""

from __future__ import annotations

import numpy as np

from flexserve.monitor.args import check_range
from flexserve.monitor.core import MonitorContext, refuse
from flexserve.monitor.flexmem import DRAM_PERM
from flexserve.monitor.ledger import FrameState
from flexserve.monitor.ondemand import OnDemandProtection
from flexserve.monitor.status import SmcStatus
from flexserve.soc.access import Perm
from flexserve.soc.constants import NO_FRAME
from flexserve.soc.work import WorkRecord


class GuestStage2:
    def __init__(self, ctx: MonitorContext, odp: OnDemandProtection) -> None:
        self.ctx = ctx
        self.odp = odp

    def _ipa_range(self, ipa_page: int, page_count: int) -> np.ndarray:
        check_range(page_count, 1, self.ctx.dram_frames)
        check_range(ipa_page, 0, self.ctx.ipa_pages - page_count)
        ipa_pages = np.arange(ipa_page, ipa_page + page_count, dtype=np.int64)
        if np.any(np.isin(ipa_pages, self.ctx.mmio_ipa_pages)):
            refuse(SmcStatus.DENIED)
        return ipa_pages

    def map(self, ipa_page: int, frame: int, page_count: int, perm: int) -> WorkRecord:
        """Attach detached NORMAL frames ``[frame, frame+count)`` at ``ipa_page``."""
        check_range(perm, 1, int(Perm.RWX))
        ipa_pages = self._ipa_range(ipa_page, page_count)
        check_range(frame, 0, self.ctx.dram_frames - page_count)
        record = self.odp.ensure_enabled()
        frames = np.arange(frame, frame + page_count, dtype=np.int64)
        ledger = self.ctx.ledger
        if np.any(self.ctx.normal_s2.pa_pages[ipa_pages] >= 0) or \
                np.any(ledger.ipa_holder[ipa_pages] >= 0):
            refuse(SmcStatus.DENIED)
        if not ledger.states_are(frames, FrameState.NORMAL) or \
                np.any(ledger.frame_ipa[frames] >= 0) or \
                np.any(self.ctx.soc.tzasc.secure_mask(frames)):
            refuse(SmcStatus.DENIED)
        self.ctx.normal_s2.map_pages(ipa_pages, frames, Perm(perm) & DRAM_PERM)
        ledger.frame_ipa[frames] = ipa_pages
        return record + WorkRecord(s2pt_entries_changed=page_count)

    def unmap(self, ipa_page: int, page_count: int) -> WorkRecord:
        """Detach the frames mapped at ``[ipa_page, ipa_page+count)`` (all must be mapped)."""
        ipa_pages = self._ipa_range(ipa_page, page_count)
        record = self.odp.ensure_enabled()
        frames = self.ctx.normal_s2.pa_pages[ipa_pages].astype(np.int64)
        if np.any(frames < 0) or np.any(frames >= self.ctx.dram_frames):
            refuse(SmcStatus.DENIED)
        if not self.ctx.ledger.states_are(frames, FrameState.NORMAL, FrameState.TZASC_SECURE):
            refuse(SmcStatus.DENIED)
        self.ctx.normal_s2.unmap_pages(ipa_pages)
        self.ctx.ledger.frame_ipa[frames] = NO_FRAME
        return record + WorkRecord(s2pt_entries_changed=page_count,
                                   tlb_invalidations=self.ctx.tlbi_count(page_count))
