"""Contiguous memory allocator: carve physically contiguous runs out of a region.

Free pages in the chosen window are isolated, movable pages are migrated out, and the whole
window becomes one allocation. A window holding an unmovable, reserved, pinned or already
contiguous-allocated page cannot be used; when every window is blocked the request fails
before anything changes (:class:`ContiguityError`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexserve.errors import ConfigError, OutOfMemoryError
from flexserve.nwos.events import EventKind
from flexserve.nwos.kernel import NormalWorldKernel
from flexserve.nwos.migrate import migratable, migrate
from flexserve.nwos.owners import CONTIG_OWNER
from flexserve.nwos.page import MAX_ORDER_PAGES, PageKind, PageState
from flexserve.nwos.workdelta import since, snapshot
from flexserve.soc.work import WorkRecord


class ContiguityError(OutOfMemoryError):
    """No window of the region can become contiguous: unmovable pages block every one."""


@dataclass(frozen=True)
class ContigAllocation:
    start_pfn: int
    count_pages: int
    migrated_pages: int
    work: WorkRecord


class ContigRegion:
    """A PFN range (aligned to max-order blocks) that serves contiguous allocations."""

    def __init__(self, kernel: NormalWorldKernel, start_pfn: int, count_pages: int,
                 name: str = "cma") -> None:
        if start_pfn % MAX_ORDER_PAGES or count_pages % MAX_ORDER_PAGES or count_pages <= 0:
            raise ConfigError("contiguous region must be aligned to max-order blocks")
        self.kernel, self.name = kernel, name
        self.start_pfn, self.count_pages = start_pfn, count_pages
        self._lo = int(kernel.buddy.pages.to_index(start_pfn))
        self._in_use = np.zeros(count_pages // MAX_ORDER_PAGES, dtype=bool)

    # -- window choice -----------------------------------------------------------------
    def _blocked_blocks(self) -> np.ndarray:
        pm = self.kernel.buddy.pages
        sl = slice(self._lo, self._lo + self.count_pages)
        idx = np.arange(sl.start, sl.stop, dtype=np.int64)
        state = pm.state[sl]
        blocker = (state == PageState.RESERVED) | (state == PageState.ISOLATED)
        allocated = state == PageState.ALLOCATED
        blocker |= allocated & ~migratable(self.kernel.buddy, idx)
        return blocker.reshape(-1, MAX_ORDER_PAGES).any(axis=1) | self._in_use

    def _find_window(self, blocks: int) -> int | None:
        """First block index starting ``blocks`` unblocked blocks in a row, or None."""
        bad = np.concatenate(([0], np.cumsum(self._blocked_blocks(), dtype=np.int64)))
        ok = np.flatnonzero(bad[blocks:] - bad[:-blocks] == 0) if blocks <= bad.size - 1 else []
        return int(ok[0]) if len(ok) else None

    # -- allocation --------------------------------------------------------------------
    def alloc(self, count_pages: int, owner: int = CONTIG_OWNER) -> ContigAllocation:
        """``count_pages`` physically contiguous pages (rounded up to whole 4 MiB blocks)."""
        if count_pages <= 0:
            raise ConfigError("contiguous allocation must be > 0 pages")
        blocks = -(-count_pages // MAX_ORDER_PAGES)
        first = self._find_window(blocks)
        if first is None:
            self.kernel.events.record(EventKind.CMA_BUSY, count_pages, self.name)
            raise ContiguityError(f"{self.name}: no window of {blocks} blocks free of "
                                  "unmovable or pinned pages")
        before = snapshot(self.kernel.work)
        start = self.start_pfn + first * MAX_ORDER_PAGES
        span = blocks * MAX_ORDER_PAGES
        migrated = self._evacuate(start, span)
        buddy = self.kernel.buddy
        window = np.arange(start, start + span, dtype=np.int64)
        buddy.claim_isolated(window, PageKind.CONTIG, owner)
        if span > count_pages:
            buddy.release(window[count_pages:])
        self._in_use[first:first + blocks] = True
        self.kernel.events.record(EventKind.CMA_ALLOC, count_pages, self.name)
        return ContigAllocation(start, count_pages, migrated, since(self.kernel.work, before))

    def grow(self, allocation: ContigAllocation, extra_pages: int) -> ContigAllocation:
        """Extend a block-granular ``allocation`` in place by whole blocks right after it.

        Returns the combined allocation; raises :class:`ContiguityError` (changing nothing)
        when the blocks after it are outside the region, in use, or blocked by unmovable pages.
        """
        if extra_pages <= 0:
            raise ConfigError("contiguous growth must be > 0 pages")
        if allocation.count_pages % MAX_ORDER_PAGES:
            raise ConfigError("only block-granular allocations can grow")
        blocks = -(-extra_pages // MAX_ORDER_PAGES)
        start = allocation.start_pfn + allocation.count_pages
        first = (start - self.start_pfn) // MAX_ORDER_PAGES
        if first + blocks > self._in_use.size or self._blocked_blocks()[first:first + blocks].any():
            self.kernel.events.record(EventKind.CMA_BUSY, extra_pages, self.name)
            raise ContiguityError(f"{self.name}: the {blocks} blocks after the allocation "
                                  "are not available")
        before = snapshot(self.kernel.work)
        span = blocks * MAX_ORDER_PAGES
        migrated = self._evacuate(start, span)
        window = np.arange(start, start + span, dtype=np.int64)
        self.kernel.buddy.claim_isolated(window, PageKind.CONTIG, CONTIG_OWNER)
        self._in_use[first:first + blocks] = True
        self.kernel.events.record(EventKind.CMA_ALLOC, span, self.name)
        return ContigAllocation(allocation.start_pfn, allocation.count_pages + span,
                                allocation.migrated_pages + migrated,
                                since(self.kernel.work, before))

    def _evacuate(self, start: int, span: int) -> int:
        """Isolate the window and migrate its movable pages out; returns pages migrated."""
        kernel, buddy = self.kernel, self.kernel.buddy
        idx = buddy.pages.to_index(np.arange(start, start + span, dtype=np.int64))
        movable = int(np.count_nonzero(migratable(buddy, idx)))
        free_inside = int(np.count_nonzero(buddy.pages.state[idx] == PageState.FREE))
        kernel.reserve(PageKind.ANON, movable + free_inside)  # may reclaim inside the window
        isolated = buddy.isolate_free(start, span)
        src_idx = idx[migratable(buddy, idx)]
        try:
            dst = kernel.alloc_unreclaimed(CONTIG_OWNER, PageKind.ANON, int(src_idx.size),
                                          zero=False)
        except OutOfMemoryError:
            buddy.release(isolated)
            kernel.events.record(EventKind.OOM, int(src_idx.size), self.name)
            raise
        migrate(buddy, buddy.pages.to_pfn(src_idx), dst)
        if src_idx.size:
            kernel.events.record(EventKind.MIGRATE, int(src_idx.size), self.name)
        return int(src_idx.size)

    def release(self, allocation: ContigAllocation) -> None:
        pfns = np.arange(allocation.start_pfn, allocation.start_pfn + allocation.count_pages,
                         dtype=np.int64)
        self.kernel.free(pfns)
        first = (allocation.start_pfn - self.start_pfn) // MAX_ORDER_PAGES
        self._in_use[first:first + -(-allocation.count_pages // MAX_ORDER_PAGES)] = False
