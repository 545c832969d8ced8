"""Background workloads: a seeded churn that fragments memory, and ``--vm-keep``-style apps.

:class:`ChurnWorkload` interleaves allocations and frees of mixed kinds, sizes and lifetimes
until memory holds the target fraction, then keeps churning. Long-lived small kernel blocks
scattered through memory are what make large contiguous runs rare, as on a phone that has been
up for a while.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

from flexserve.errors import ConfigError
from flexserve.nwos.apps import App
from flexserve.nwos.handles import Allocation
from flexserve.nwos.kernel import NormalWorldKernel
from flexserve.nwos.owners import KERNEL_OWNER
from flexserve.nwos.page import PAGE_SIZE_BYTES, PageKind, pages_for_bytes


@dataclass(frozen=True)
class ChurnConfig:
    target_used_fraction: float = 0.5   # of the managed pages, in steady state
    peak_used_fraction: float = 0.9     # reached once first (uptime: memory has cycled)
    kernel_event_share: float = 0.3     # share of events that are kernel (slab) blocks
    cache_event_share: float = 0.3      # share of events that are page-cache reads
    max_kernel_order: int = 3
    max_user_alloc_pages: int = 4096    # user sizes are log-uniform in [1, this]
    permanent_kernel_share: float = 0.5  # kernel blocks that are never freed
    apps: int = 8
    interleave: int = 8  # user allocations faulted in concurrently, page by page

    def __post_init__(self) -> None:
        if not 0.0 < self.target_used_fraction <= self.peak_used_fraction < 1.0:
            raise ConfigError("need 0 < target_used_fraction <= peak_used_fraction < 1")
        if self.kernel_event_share + self.cache_event_share > 1.0:
            raise ConfigError("event shares must sum to at most 1")

    def mean_pages_per_event(self) -> float:
        top = self.max_user_alloc_pages
        user = (top - 1) / math.log(top) if top > 1 else 1.0
        orders = np.arange(self.max_kernel_order + 1)
        p = 0.6 * 0.4 ** orders  # geometric order distribution, truncated below
        p[-1] += 1.0 - p.sum()
        kernel = float((p * 2.0 ** orders).sum())
        return ((1.0 - self.kernel_event_share) * user * self.interleave
                + self.kernel_event_share * kernel)

    def mean_lifetime_events(self, total_pages: int, fraction: float) -> float:
        """Lifetime that makes the churn's steady state hold ``fraction`` (Little's law)."""
        return fraction * total_pages / self.mean_pages_per_event()


@dataclass
class ChurnWorkload:
    """Seeded background churn over a kernel; call :meth:`run` to advance it."""

    kernel: NormalWorldKernel
    rng: np.random.Generator
    config: ChurnConfig = field(default_factory=ChurnConfig)
    events_done: int = 0

    def __post_init__(self) -> None:
        self.apps: list[App] = [
            self.kernel.spawn_app(f"bg{i}", oom_score_adj=int(self.rng.integers(0, 1000)))
            for i in range(self.config.apps)
        ]
        self._live: list[tuple[float, int, Allocation]] = []  # (expiry, seq, allocation)
        total = self.kernel.buddy.total_pages
        self._lifetime = self.config.mean_lifetime_events(total, self.config.peak_used_fraction)
        self._peaked = False

    def used_pages(self) -> int:
        return self.kernel.buddy.total_pages - self.kernel.buddy.free_pages()

    def fill(self) -> None:
        """Cycle memory up to the peak fraction once, then settle at the target fraction.

        The descent frees random live allocations, so free memory ends up scattered over the
        whole range instead of sitting untouched at its top.
        """
        total = self.kernel.buddy.total_pages
        if not self._peaked:
            while self.used_pages() < self.config.peak_used_fraction * total:
                self._one_event()
            self._peaked = True
            order = self.rng.permutation(len(self._live))
            victims = [self._live[i] for i in order]
            keep: set[int] = set()
            for _, seq, allocation in victims:
                if self.used_pages() <= self.config.target_used_fraction * total:
                    keep.add(seq)
                    continue
                self._free(allocation)
            self._live = [entry for entry in self._live if entry[1] in keep]
            heapq.heapify(self._live)
            self._lifetime = self.config.mean_lifetime_events(
                total, self.config.target_used_fraction)
        while self.used_pages() < self.config.target_used_fraction * total:
            self._one_event()

    def run(self, events: int) -> None:
        """``events`` more allocation events, freeing what expires in between."""
        for _ in range(events):
            self._one_event()
        self.fill()

    def _one_event(self) -> None:
        """One kernel block, or a group of concurrently faulted-in user allocations."""
        self.events_done += 1
        self._expire()
        cfg = self.config
        if self.rng.random() < cfg.kernel_event_share:
            self._kernel_block()
            return
        user_share = 1.0 - cfg.kernel_event_share
        cache_p = cfg.cache_event_share / user_share if user_share else 0.0
        kinds = [PageKind.PAGE_CACHE if self.rng.random() < cache_p else PageKind.ANON
                 for _ in range(cfg.interleave)]
        self._user_group(kinds)

    def _kernel_block(self) -> None:
        order = min(int(self.rng.geometric(0.6)) - 1, self.config.max_kernel_order)
        pfn = self.kernel.alloc_block(KERNEL_OWNER, PageKind.KERNEL, order)
        pfns = np.arange(pfn, pfn + (1 << order), dtype=np.int64)
        permanent = self.rng.random() < self.config.permanent_kernel_share
        self._keep(Allocation.of(self.kernel, KERNEL_OWNER, pfns), permanent)

    def _user_group(self, kinds: list[PageKind]) -> None:
        """Allocate for several apps at once and deal the pages out at random, as concurrent
        page faults of several processes interleave in physical memory."""
        live = [a for a in self.apps if a.alive]
        if not live:
            return
        top = math.log(self.config.max_user_alloc_pages)
        counts = [max(1, int(math.exp(self.rng.uniform(0.0, top)))) for _ in kinds]
        owners = [live[int(self.rng.integers(len(live)))].app_id for _ in kinds]
        movable = PageKind.ANON  # both kinds are movable: one placement for the group
        pfns = self.rng.permutation(self.kernel.alloc(owners[0], movable, sum(counts)))
        start = 0
        for kind, count, owner in zip(kinds, counts, owners, strict=True):
            mine = np.sort(pfns[start:start + count])
            start += count
            self.kernel.buddy.reassign(mine, kind, owner)
            self._keep(Allocation.of(self.kernel, owner, mine), permanent=False)

    def _keep(self, allocation: Allocation, permanent: bool) -> None:
        if permanent:
            return
        expiry = self.events_done + self.rng.exponential(self._lifetime)
        heapq.heappush(self._live, (expiry, self.events_done, allocation))

    def _expire(self) -> None:
        while self._live and self._live[0][0] <= self.events_done:
            self._free(heapq.heappop(self._live)[2])

    def _free(self, allocation: Allocation) -> None:
        owner = allocation.owner
        if owner in self.kernel.apps and not self.kernel.apps.get(owner).alive:
            return  # its anonymous memory died with it
        allocation.free(self.kernel)


@dataclass
class VmKeepApp:
    """An app that maps ``level_bytes`` of anonymous memory and keeps touching it."""

    kernel: NormalWorldKernel
    app: App
    level_bytes: int

    @classmethod
    def start(cls, kernel: NormalWorldKernel, name: str, level_bytes: int,
              oom_score_adj: int = 0, chunk_pages: int = 4096) -> VmKeepApp:
        app = kernel.spawn_app(name, oom_score_adj)
        keeper = cls(kernel, app, level_bytes)
        left = pages_for_bytes(level_bytes)
        while left > 0 and app.alive:
            count = min(chunk_pages, left)
            kernel.alloc(app.app_id, PageKind.ANON, count)
            left -= count
        return keeper

    @property
    def resident_bytes(self) -> int:
        pm = self.kernel.buddy.pages
        mine = (pm.owner == self.app.app_id) & (pm.kind == PageKind.ANON)
        return int(np.count_nonzero(mine)) * PAGE_SIZE_BYTES

    def touch(self) -> None:
        if self.app.alive:
            self.kernel.touch(self.app.app_id)
