"""Reclaim mechanisms ("shrinkers"): each frees pages of one kind when asked.

A shrinker is anything with a ``name`` and ``shrink(pages) -> pages_freed``. The order in
which the pressure handler calls them is policy and lives in ``pressure``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from flexserve.nwos.apps import AppTable
from flexserve.nwos.buddy import BuddyAllocator
from flexserve.nwos.events import EventKind, EventLog
from flexserve.nwos.lru import oldest_pages
from flexserve.nwos.page import PAGE_SIZE_BYTES, PageKind
from flexserve.nwos.swap import SwapSpace


class Shrinker(Protocol):
    name: str

    def shrink(self, pages: int) -> int:
        """Try to free ``pages`` pages; return how many were freed."""
        ...


class PageCacheShrinker:
    """Drops the least recently used clean page-cache pages (no I/O needed)."""

    name = "page_cache"

    def __init__(self, buddy: BuddyAllocator, events: EventLog) -> None:
        self._buddy, self._events = buddy, events

    def shrink(self, pages: int) -> int:
        victims = oldest_pages(self._buddy.pages, PageKind.PAGE_CACHE, pages)
        if not victims.size:
            return 0
        freed = self._buddy.release(self._buddy.pages.to_pfn(victims))
        self._buddy.work.pages_reclaimed += freed
        self._events.record(EventKind.DROP_CACHE, freed)
        return freed


class SwapShrinker:
    """Writes the least recently used anonymous pages to swap and frees them."""

    name = "swap"

    def __init__(self, buddy: BuddyAllocator, swap: SwapSpace, apps: AppTable,
                 events: EventLog) -> None:
        self._buddy, self._swap, self._apps, self._events = buddy, swap, apps, events

    def shrink(self, pages: int) -> int:
        pm = self._buddy.pages
        victims = oldest_pages(pm, PageKind.ANON, min(pages, self._swap.free_slots))
        if not victims.size:
            return 0
        owners = pm.owner[victims].astype(np.int64)
        self._swap.write(owners, pm.vpn[victims], pm.content[victims])
        for owner, count in zip(*np.unique(owners, return_counts=True), strict=True):
            if int(owner) in self._apps:
                self._apps.get(int(owner)).swapped_pages += int(count)
        freed = self._buddy.release(pm.to_pfn(victims))
        work = self._buddy.work
        work.pages_swapped_out += freed
        work.pages_reclaimed += freed
        work.bytes_written_flash += freed * PAGE_SIZE_BYTES
        self._events.record(EventKind.SWAP_OUT, freed)
        return freed
