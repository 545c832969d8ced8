"""Flex-Mem: page-granular, recallable secure memory (EL2 mechanism).

Protect takes frames the normal world names by IPA, removes them from the normal S2PT
(which the normal-world SMMU streams share) and records them as owned by a secure owner.
Return scrubs every written frame and maps it back at the IPA it came from. Every call
validates the whole request first and changes nothing when it refuses.
"""

from __future__ import annotations

import enum

import numpy as np

from flexserve.monitor.core import MonitorContext, refuse
from flexserve.monitor.ledger import FLEX_STATES, MAX_OWNER_ID, FrameState
from flexserve.monitor.ondemand import OnDemandProtection
from flexserve.monitor.status import SmcStatus
from flexserve.soc.access import Perm
from flexserve.soc.work import WorkRecord

#: Stage-2 permissions of normal DRAM (stage-2 XN clear: the OS runs code from it).
DRAM_PERM = Perm.RWX


def check_owner(owner: int) -> int:
    if not 1 <= owner <= MAX_OWNER_ID:
        refuse(SmcStatus.INVALID_PARAMETER)
    return owner


class FlexMem:
    def __init__(self, ctx: MonitorContext, odp: OnDemandProtection) -> None:
        self.ctx = ctx
        self.odp = odp

    # ----- normal-world entry points -----
    def protect(self, owner: int, ipa_pages: np.ndarray) -> WorkRecord:
        """Hand the frames mapped at ``ipa_pages`` to ``owner``."""
        check_owner(owner)
        record = self.odp.ensure_enabled()
        frames = self._normal_frames_at(ipa_pages)
        ledger = self.ctx.ledger
        self.ctx.normal_s2.unmap_pages(ipa_pages)
        ledger.hold(frames, FrameState.FLEX_PROTECTED, owner)
        count = int(frames.size)
        return record + WorkRecord(frames_touched=count, s2pt_entries_changed=count,
                                   tlb_invalidations=self.ctx.tlbi_count(count))

    def release_by_ipa(self, owner: int, ipa_pages: np.ndarray) -> WorkRecord:
        """Take back frames the owner has unmapped from its TA (cooperative reclaim)."""
        check_owner(owner)
        record = self.odp.ensure_enabled()
        frames = self.ctx.ledger.ipa_holder[ipa_pages].astype(np.int64)
        if np.any(frames < 0):
            refuse(SmcStatus.DENIED)
        if not self.ctx.ledger.owned_by(frames, owner, FrameState.FLEX_PROTECTED):
            refuse(SmcStatus.DENIED)
        return record + self.return_frames(frames)

    def query(self, ipa_page: int) -> tuple[int, int]:
        """``(IpaStatus, owner)`` of one IPA page (FLEXMEM_QUERY)."""
        if not 0 <= ipa_page < self.ctx.ipa_pages:
            refuse(SmcStatus.INVALID_PARAMETER)
        self.odp.ensure_enabled()  # the answer comes from EL2 data: verify it first
        if ipa_page >= self.ctx.dram_frames:
            return int(IpaStatus.DEVICE), 0
        ledger = self.ctx.ledger
        holder = int(ledger.ipa_holder[ipa_page])
        if holder >= 0:
            sandboxed = ledger.state[holder] == FrameState.NPU_SANDBOX
            kind = IpaStatus.NPU_HELD if sandboxed else IpaStatus.FLEX_HELD
            return int(kind), int(ledger.owner[holder])
        mapped = self.ctx.normal_s2.pa_pages[ipa_page] >= 0
        return int(IpaStatus.MAPPED if mapped else IpaStatus.UNMAPPED), 0

    # ----- secure-world entry points -----
    def frames_of(self, owner: int) -> np.ndarray:
        check_owner(owner)
        self.odp.ensure_enabled()
        return self.ctx.ledger.frames_of(owner)

    def release_frames(self, owner: int, frames: np.ndarray) -> WorkRecord:
        """The owner gives frames back (mapped or not)."""
        self.require_owned(owner, frames, *FLEX_STATES)
        return self.return_frames(frames)

    def map_into_ta(self, owner: int, frames: np.ndarray) -> WorkRecord:
        self.require_owned(owner, frames, FrameState.FLEX_PROTECTED)
        self.ctx.ledger.state[frames] = FrameState.FLEX_MAPPED
        return WorkRecord(frames_touched=int(frames.size))

    def unmap_from_ta(self, owner: int, frames: np.ndarray) -> WorkRecord:
        self.require_owned(owner, frames, FrameState.FLEX_MAPPED)
        self.ctx.ledger.state[frames] = FrameState.FLEX_PROTECTED
        return WorkRecord(frames_touched=int(frames.size))

    def require_owned(self, owner: int, frames: np.ndarray, *states: FrameState) -> None:
        """Refuse unless the (verified) ledger says ``owner`` holds ``frames`` in ``states``."""
        check_owner(owner)
        self.odp.ensure_enabled()  # never trust EL2 data the normal world could reach
        if not self.ctx.ledger.owned_by(frames, owner, *states):
            refuse(SmcStatus.DENIED)

    # ----- shared mechanism -----
    def _normal_frames_at(self, ipa_pages: np.ndarray) -> np.ndarray:
        """Frames currently mapped at ``ipa_pages`` that may become Flex-Mem, else refuse."""
        frames = self.ctx.normal_s2.pa_pages[ipa_pages].astype(np.int64)
        if np.any(frames < 0) or np.any(frames >= self.ctx.dram_frames):
            refuse(SmcStatus.DENIED)
        if not self.ctx.ledger.states_are(frames, FrameState.NORMAL):
            refuse(SmcStatus.DENIED)
        if np.any(self.ctx.soc.tzasc.secure_mask(frames)):
            refuse(SmcStatus.DENIED)
        return frames

    def return_frames(self, frames: np.ndarray) -> WorkRecord:
        """Scrub, then give held frames back to the normal world at their old IPA."""
        record = self.ctx.soc.memory.zero_frames(frames)
        ipa_pages = self.ctx.ledger.unhold(frames)
        self.ctx.normal_s2.map_pages(ipa_pages, frames, DRAM_PERM)
        # invalid -> valid needs no TLB maintenance (invalid entries are never cached)
        return record + WorkRecord(s2pt_entries_changed=int(frames.size))


class IpaStatus(enum.IntEnum):
    """What FLEXMEM_QUERY reports about one IPA page."""

    MAPPED = 0       # normal memory mapped there
    FLEX_HELD = 1    # held for a Flex-Mem frame
    NPU_HELD = 2     # held for an NPU driver page lent to the sandbox
    UNMAPPED = 3     # nothing mapped, nothing held
    DEVICE = 4       # a device window (mapped or not)

