"""The normal-world kernel's memory manager: allocator + apps + pressure, as one facade."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from flexserve.errors import OutOfMemoryError
from flexserve.nwos.apps import App, AppStatus, AppTable
from flexserve.nwos.buddy import BuddyAllocator, PfnRange
from flexserve.nwos.events import EventKind, EventLog
from flexserve.nwos.lmk import choose_victim
from flexserve.nwos.owners import FIRST_APP_ID
from flexserve.nwos.page import Area, PageKind, PageState
from flexserve.nwos.placement import allowed_areas, split_request
from flexserve.nwos.pressure import PressureHandler, PressurePolicy
from flexserve.nwos.shrinkers import PageCacheShrinker, Shrinker, SwapShrinker
from flexserve.nwos.swap import SwapSpace
from flexserve.nwos.watermarks import Watermarks
from flexserve.soc.work import WorkRecord


@dataclass(frozen=True)
class KernelConfig:
    total_pages: int
    base_pfn: int = 0
    reserved: tuple[PfnRange, ...] = ()
    cma: tuple[PfnRange, ...] = ()
    swap_pages: int = 0
    watermarks: Watermarks | None = None  # None: sized from total_pages
    pressure: PressurePolicy = field(default_factory=PressurePolicy)


@dataclass(frozen=True)
class MemoryStats:
    """Page counts by use; ``free + sum(used) + reserved + isolated == total``."""

    total_pages: int
    free_pages: int
    reserved_pages: int
    isolated_pages: int
    used_pages: dict[PageKind, int]
    swapped_pages: int


class NormalWorldKernel:
    """Allocation entry points of the normal-world OS, with reclaim and the killer behind."""

    def __init__(self, config: KernelConfig) -> None:
        self.config = config
        self.buddy = BuddyAllocator(config.base_pfn, config.total_pages,
                                    reserved=config.reserved, cma=config.cma)
        self.apps = AppTable(FIRST_APP_ID)
        self.swap = SwapSpace(config.swap_pages)
        self.events = EventLog()
        self.watermarks = config.watermarks or Watermarks.for_memory(config.total_pages)
        self.pressure = PressureHandler(self.watermarks, config.pressure, self.events)
        self.pressure.register(PageCacheShrinker(self.buddy, self.events))
        self.pressure.register(SwapShrinker(self.buddy, self.swap, self.apps, self.events))

    @property
    def work(self) -> WorkRecord:
        return self.buddy.work

    def register_shrinker(self, shrinker: Shrinker) -> None:
        self.pressure.register(shrinker)

    # -- apps --------------------------------------------------------------------------
    def spawn_app(self, name: str, oom_score_adj: int = 0) -> App:
        return self.apps.spawn(name, oom_score_adj)

    def kill(self, app: App) -> int:
        """End ``app`` as the low-memory killer does; returns resident anon pages freed."""
        freed = self._end(app, AppStatus.KILLED)
        self.events.record(EventKind.KILL, freed, app.name)
        return freed

    def exit_app(self, app: App) -> int:
        return self._end(app, AppStatus.EXITED)

    def _end(self, app: App, status: AppStatus) -> int:
        # Anonymous memory dies with the process; its page cache stays cached (droppable).
        freed = self.buddy.release_owner(app.app_id, PageKind.ANON)
        self.swap.discard_owner(app.app_id)
        app.status = status
        return freed

    def touch(self, owner: int) -> None:
        """Mark every page of ``owner`` as just used (a ``--vm-keep`` app re-touching)."""
        self.buddy.tick += 1
        pm = self.buddy.pages
        pm.stamp[pm.owner == owner] = self.buddy.tick

    # -- allocation --------------------------------------------------------------------
    def available_pages(self, kind: PageKind) -> int:
        return sum(self.buddy.free_pages(a) for a in allowed_areas(kind))

    def alloc(self, owner: int, kind: PageKind, count_pages: int,
              exclude_shrinkers: Collection[str] = ()) -> np.ndarray:
        """``count_pages`` pages for ``owner`` (non-contiguous), reclaiming or killing if needed."""
        self._make_room(kind, count_pages, exclude_shrinkers)
        return self.alloc_unreclaimed(owner, kind, count_pages)

    def reserve(self, kind: PageKind, count_pages: int,
                exclude_shrinkers: Collection[str] = ()) -> None:
        """Reclaim (or kill) until ``count_pages`` pages of ``kind`` could be allocated."""
        self._make_room(kind, count_pages, exclude_shrinkers)

    def alloc_unreclaimed(self, owner: int, kind: PageKind, count_pages: int, *,
                          zero: bool = True) -> np.ndarray:
        """Allocate from what is free now, without reclaim (raises OutOfMemoryError).

        ``zero=False`` for pages about to be overwritten (migration targets).
        """
        if count_pages > self.available_pages(kind):
            raise OutOfMemoryError(
                f"{count_pages} pages requested, {self.available_pages(kind)} free")
        free_by_area = {a: self.buddy.free_pages(a) for a in Area}
        plan = split_request(count_pages, kind, free_by_area)
        parts = [self.buddy.alloc_pages(n, kind, owner, area, zero=zero)
                 for area, n in plan.items() if n]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def alloc_block(self, owner: int, kind: PageKind, order: int) -> int:
        """One contiguous block of ``2**order`` pages from ordinary memory."""
        self._make_room(kind, 1 << order, ())
        return self.buddy.alloc_block(order, kind, owner, allowed_areas(kind)[0])

    def free(self, pfns: np.ndarray) -> int:
        return self.buddy.release(pfns)

    def _make_room(self, kind: PageKind, count_pages: int, exclude: Collection[str]) -> None:
        self.pressure.make_room(count_pages, lambda: self.available_pages(kind), self._kill_one,
                                exclude)

    def _kill_one(self) -> App | None:
        pm = self.buddy.pages
        anon = pm.owner[(pm.kind == PageKind.ANON) & (pm.owner >= 0)]
        victim = choose_victim(self.apps.running(), np.bincount(anon))
        if victim is not None:
            self.kill(victim)
        return victim

    # -- accounting --------------------------------------------------------------------
    def stats(self) -> MemoryStats:
        pm = self.buddy.pages
        allocated = pm.kind[pm.state == PageState.ALLOCATED]
        counts = np.bincount(allocated, minlength=len(PageKind))
        return MemoryStats(
            total_pages=pm.total_pages,
            free_pages=self.buddy.free_pages(),
            reserved_pages=self.buddy.count_state(PageState.RESERVED),
            isolated_pages=self.buddy.count_state(PageState.ISOLATED),
            used_pages={k: int(counts[k]) for k in PageKind if k != PageKind.NONE},
            swapped_pages=self.swap.used_pages,
        )
