"""EL3 programming of the classic TZASC regions 1..7 (region 0 holds the TEE).

Used by the strawman designs: the normal OS provides a physically contiguous range (CMA),
the secure side turns it into a TZASC region; on release the monitor scrubs it.
"""

from __future__ import annotations

import numpy as np

from flexserve.errors import ConfigError
from flexserve.monitor.args import check_range
from flexserve.monitor.core import MonitorContext, refuse
from flexserve.monitor.ledger import FrameState
from flexserve.monitor.ondemand import OnDemandProtection
from flexserve.monitor.status import SmcStatus
from flexserve.soc.board import TEE_TZASC_REGION
from flexserve.soc.constants import FRAME_SHIFT, pages_spanned
from flexserve.soc.tzasc import TZASC_REGION_COUNT, TzascRegion
from flexserve.soc.work import WorkRecord


class TzascService:
    def __init__(self, ctx: MonitorContext, odp: OnDemandProtection) -> None:
        self.ctx = ctx
        self.odp = odp

    def assign(self, index: int, base_frame: int, frame_count: int) -> WorkRecord:
        check_range(index, TEE_TZASC_REGION + 1, TZASC_REGION_COUNT - 1)
        check_range(frame_count, 1, self.ctx.dram_frames)
        check_range(base_frame, 0, self.ctx.dram_frames - frame_count)
        record = self.odp.ensure_enabled()
        tzasc = self.ctx.soc.tzasc
        if tzasc.regions[index] is not None:
            refuse(SmcStatus.BUSY)
        frames = np.arange(base_frame, base_frame + frame_count, dtype=np.int64)
        if not self.ctx.ledger.states_are(frames, FrameState.NORMAL):
            refuse(SmcStatus.DENIED)
        tzasc.set_region(index, TzascRegion(base_frame, frame_count))
        self.ctx.ledger.state[frames] = FrameState.TZASC_SECURE
        return record + WorkRecord(frames_touched=frame_count, world_switches=2)

    def extend(self, index: int, extra_frames: int) -> WorkRecord:
        """Grow region ``index`` by the ``extra_frames`` frames right after its end."""
        check_range(index, TEE_TZASC_REGION + 1, TZASC_REGION_COUNT - 1)
        check_range(extra_frames, 1, self.ctx.dram_frames)
        record = self.odp.ensure_enabled()
        tzasc = self.ctx.soc.tzasc
        region = tzasc.regions[index]
        if region is None:
            refuse(SmcStatus.NOT_REQUIRED)
        if region.end_frame + extra_frames > self.ctx.dram_frames:
            refuse(SmcStatus.INVALID_PARAMETER)
        frames = np.arange(region.end_frame, region.end_frame + extra_frames, dtype=np.int64)
        if not self.ctx.ledger.states_are(frames, FrameState.NORMAL):
            refuse(SmcStatus.DENIED)
        try:
            tzasc.set_region(index, TzascRegion(region.base_frame,
                                                region.frame_count + extra_frames))
        except ConfigError:
            refuse(SmcStatus.DENIED)  # would overlap another region
        self.ctx.ledger.state[frames] = FrameState.TZASC_SECURE
        return record + WorkRecord(frames_touched=extra_frames, world_switches=2)

    def release(self, index: int) -> WorkRecord:
        check_range(index, TEE_TZASC_REGION + 1, TZASC_REGION_COUNT - 1)
        self.odp.ensure_enabled()
        region = self.ctx.soc.tzasc.regions[index]
        if region is None:
            refuse(SmcStatus.NOT_REQUIRED)
        frames = np.arange(region.base_frame, region.end_frame, dtype=np.int64)
        record = self.ctx.soc.memory.zero_frames(frames)
        self.ctx.soc.tzasc.clear_region(index)
        self.ctx.ledger.state[frames] = FrameState.NORMAL
        return record + WorkRecord(world_switches=2)

    def require_assigned_frames(self, first_frame: int, count: int) -> np.ndarray:
        """The frames ``[first_frame, first_frame + count)`` if all are TZASC-secure."""
        self.odp.ensure_enabled()
        if count <= 0 or first_frame < 0 or first_frame + count > self.ctx.dram_frames:
            refuse(SmcStatus.INVALID_PARAMETER)
        frames = np.arange(first_frame, first_frame + count, dtype=np.int64)
        if not self.ctx.ledger.states_are(frames, FrameState.TZASC_SECURE):
            refuse(SmcStatus.DENIED)
        return frames

    def require_assigned(self, pa: int, size_bytes: int) -> None:
        self.odp.ensure_enabled()
        limit = self.ctx.dram_frames << FRAME_SHIFT
        if pa < 0 or size_bytes < 0 or pa + size_bytes > limit:
            refuse(SmcStatus.INVALID_PARAMETER)
        first, count = pages_spanned(pa, size_bytes)
        frames = np.arange(first, first + count, dtype=np.int64)
        if not self.ctx.ledger.states_are(frames, FrameState.TZASC_SECURE):
            refuse(SmcStatus.DENIED)
