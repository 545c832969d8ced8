"""Invariant checks over the monitor's state (used by tests, fuzzing and debugging).

Returns human-readable violations; an empty list means every invariant holds.
"""

from __future__ import annotations

import numpy as np

from flexserve.monitor.args import all_distinct
from flexserve.monitor.el2_region import Header
from flexserve.monitor.ledger import FLEX_STATES, HELD_STATES, NO_OWNER, FrameState
from flexserve.monitor.monitor import FlexMonitor
from flexserve.monitor.npu_view import FlexMemDmaView
from flexserve.soc.npu import NpuMode
from flexserve.soc.smmu import StreamId


def audit(monitor: FlexMonitor) -> list[str]:
    problems: list[str] = []
    for check in (_normal_table, _held_frames, _owners, _reserved, _tzasc, _npu, _stage2_off):
        problems += check(monitor)
    return problems


def _in(states: np.ndarray, *wanted: FrameState) -> np.ndarray:
    return np.isin(states, np.array(wanted, dtype=np.uint8))


def _normal_table(m: FlexMonitor) -> list[str]:
    ctx, problems = m.ctx, []
    ipa = ctx.normal_s2.mapped_ipa_pages()
    pa = ctx.normal_s2.pa_pages[ipa].astype(np.int64)
    dram = pa < ctx.dram_frames
    states = ctx.ledger.state[pa[dram]]
    if not np.all(_in(states, FrameState.NORMAL, FrameState.TZASC_SECURE)):
        problems.append("normal S2PT maps a frame that is not normal memory")
    if not all_distinct(pa, ctx.soc.bus.page_limit):
        problems.append("normal S2PT aliases a frame at two IPAs")
    if not np.array_equal(ctx.ledger.frame_ipa[pa[dram]], ipa[dram]):
        problems.append("frame_ipa disagrees with the normal S2PT")
    if not np.array_equal(pa[~dram], ipa[~dram]) or \
            not np.all(np.isin(ipa[~dram], ctx.mmio_ipa_pages)):
        problems.append("normal S2PT maps a device page other than the NPU window")
    attached = np.flatnonzero((ctx.ledger.state == FrameState.NORMAL)
                              & (ctx.ledger.frame_ipa >= 0))
    if np.any(ctx.normal_s2.pa_pages[ctx.ledger.frame_ipa[attached]] != attached):
        problems.append("an attached normal frame is not mapped at its IPA")
    return problems


def _held_frames(m: FlexMonitor) -> list[str]:
    ledger, problems = m.ctx.ledger, []
    held = np.flatnonzero(_in(ledger.state, *HELD_STATES))
    ipa = ledger.frame_ipa[held].astype(np.int64)
    if np.any(ipa < 0):
        problems.append("a held frame has no IPA")
        return problems
    if np.any(m.ctx.normal_s2.pa_pages[ipa] >= 0):
        problems.append("a held IPA is mapped in the normal S2PT")
    if not np.array_equal(ledger.ipa_holder[ipa], held):
        problems.append("ipa_holder disagrees with frame_ipa")
    if int(np.count_nonzero(ledger.ipa_holder >= 0)) != held.size:
        problems.append("an IPA is held for a frame that is not held")
    return problems


def _owners(m: FlexMonitor) -> list[str]:
    ledger = m.ctx.ledger
    flex = _in(ledger.state, *FLEX_STATES)
    if np.any(ledger.owner[flex] == NO_OWNER) or np.any(ledger.owner[~flex] != NO_OWNER):
        return ["owner set exactly for Flex-Mem frames: violated"]
    return []


def _reserved(m: FlexMonitor) -> list[str]:
    reserved = np.flatnonzero(m.ctx.ledger.state == FrameState.RESERVED)
    if not np.array_equal(reserved, np.sort(m.reserved_frames())):
        return ["reserved frames changed"]
    return []


def _tzasc(m: FlexMonitor) -> list[str]:
    ctx = m.ctx
    frames = np.arange(ctx.dram_frames)
    secure = ctx.soc.tzasc.secure_mask(frames)
    expected = ctx.ledger.state == FrameState.TZASC_SECURE
    layout = ctx.soc.layout
    expected[layout.tee_base_frame:layout.tee_base_frame + layout.tee_frames] = True
    if not np.array_equal(secure, expected):
        return ["TZASC regions disagree with the ledger"]
    return []


def _npu(m: FlexMonitor) -> list[str]:
    ctx, problems = m.ctx, []
    sandboxed = int(np.count_nonzero(ctx.ledger.state == FrameState.NPU_SANDBOX))
    mmio_mapped = ctx.normal_s2.pa_pages[ctx.mmio_ipa_pages] >= 0
    context = ctx.soc.smmu.streams[StreamId.NPU].context
    if ctx.soc.npu.mode is NpuMode.SECURE:
        if np.any(mmio_mapped):
            problems.append("NPU MMIO mapped in the normal S2PT while secure")
        if not isinstance(context, FlexMemDmaView) or \
                context.owner != int(ctx.region.header[Header.NPU_OWNER]):
            problems.append("NPU stream not confined to its owner's Flex-Mem")
    else:
        if sandboxed or ctx.sandbox_s2.mapped_ipa_pages().size:
            problems.append("sandbox populated while the NPU is normal")
        if not np.all(mmio_mapped) or isinstance(context, FlexMemDmaView):
            problems.append("NPU not fully returned to the normal world")
    return problems


def _stage2_off(m: FlexMonitor) -> list[str]:
    if m.odp.stage2_enabled:
        return []
    busy = m.ctx.ledger.flex_frame_count() or m.soc.npu.mode is NpuMode.SECURE
    return ["stage-2 off while Flex-Mem or Flex-NPU is in use"] if busy else []
