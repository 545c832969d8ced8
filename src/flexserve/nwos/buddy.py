"""Binary buddy page allocator over a PFN range (orders 0..MAX_ORDER, 4 KiB pages).

Mechanism only: which area an allocation draws from, and what to do when memory runs short,
are decided by callers (see ``placement`` and ``pressure``). Every operation adds its counts to
``self.work``. All public methods speak absolute PFNs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from flexserve.errors import ConfigError, OutOfMemoryError
from flexserve.nwos.content import page_checksums
from flexserve.nwos.freelist import FreeLists
from flexserve.nwos.page import (
    MAX_ORDER,
    MAX_ORDER_PAGES,
    PAGE_SIZE_BYTES,
    Area,
    PageKind,
    PageState,
)
from flexserve.nwos.pagemap import PageMap
from flexserve.soc.work import WorkRecord

_SCALAR_RELEASE_MAX = 32  # below this, a per-page loop beats the vectorized passes
PfnRange = tuple[int, int]  # (first PFN, number of pages)


class BuddyAllocator:
    """Buddy allocator with one set of free lists per :class:`Area`."""

    def __init__(
        self,
        base_pfn: int,
        total_pages: int,
        *,
        reserved: Iterable[PfnRange] = (),
        cma: Iterable[PfnRange] = (),
    ) -> None:
        self.pages = PageMap.create(base_pfn, total_pages)
        self.free = FreeLists(self.pages)
        self.work = WorkRecord()
        self.tick = 0
        self._next_vpn: dict[int, int] = {}
        for start, count in cma:
            idx = self._aligned_range(start, count)
            self.pages.area[idx] = Area.CMA
        self.pages.state[:] = PageState.FREE
        for start, count in reserved:
            self.pages.state[self._range(start, count)] = PageState.RESERVED
        self._populate_free_lists()

    # -- construction ------------------------------------------------------------------
    def _range(self, start_pfn: int, count: int) -> np.ndarray:
        return self.pages.to_index(np.arange(start_pfn, start_pfn + count, dtype=np.int64))

    def _aligned_range(self, start_pfn: int, count: int) -> np.ndarray:
        if start_pfn % MAX_ORDER_PAGES or count % MAX_ORDER_PAGES or count <= 0:
            raise ConfigError(f"range must be aligned to and sized in {MAX_ORDER_PAGES} pages")
        return self._range(start_pfn, count)

    def _populate_free_lists(self) -> None:
        free = self.pages.state == PageState.FREE
        whole = free.reshape(-1, MAX_ORDER_PAGES).all(axis=1)
        heads = np.flatnonzero(whole).astype(np.int64) * MAX_ORDER_PAGES
        for area in Area:
            self.free.insert(area, MAX_ORDER, heads[self.pages.area[heads] == area])
        partial = free.reshape(-1, MAX_ORDER_PAGES) & ~whole[:, None]
        self._release(np.flatnonzero(partial.ravel()).astype(np.int64))

    # -- queries -----------------------------------------------------------------------
    @property
    def total_pages(self) -> int:
        return self.pages.total_pages

    def free_pages(self, area: Area | None = None) -> int:
        return self.free.free_pages(area)

    def count_state(self, state: PageState) -> int:
        return int(np.count_nonzero(self.pages.state == state))

    def free_blocks_per_order(self, area: Area | None = None) -> np.ndarray:
        counts = self.free.block_counts
        return counts.sum(axis=0) if area is None else counts[area].copy()

    def pages_of(self, owner: int, kind: PageKind | None = None) -> np.ndarray:
        """Absolute PFNs of the pages ``owner`` holds (a scan: for bulk operations only)."""
        mask = self.pages.owner == owner
        if kind is not None:
            mask &= self.pages.kind == kind
        return self.pages.to_pfn(np.flatnonzero(mask))

    # -- allocation ----------------------------------------------------------------------
    def alloc_block(self, order: int, kind: PageKind, owner: int,
                    area: Area = Area.NORMAL) -> int:
        """One physically contiguous block of ``2**order`` pages; returns its first PFN."""
        if not 0 <= order <= MAX_ORDER:
            raise ConfigError(f"order {order} outside 0..{MAX_ORDER}")
        for have in range(order, MAX_ORDER + 1):
            head = self.free.pop(area, have)
            if head is not None:
                break
        else:
            raise OutOfMemoryError(f"no free block of order >= {order} in {area.name}")
        for split in range(have - 1, order - 1, -1):
            self.free.insert_one(area, split, head + (1 << split))
        idx = np.arange(head, head + (1 << order), dtype=np.int64)
        self._assign(idx, kind, owner)
        return head + self.pages.base_pfn

    def alloc_pages(self, count_pages: int, kind: PageKind, owner: int,
                    area: Area = Area.NORMAL, *, zero: bool = True) -> np.ndarray:
        """``count_pages`` pages, not necessarily contiguous, smallest free blocks first.

        Returns absolute PFNs. All-or-nothing: raises OutOfMemoryError without side effects
        when the area has fewer than ``count_pages`` free pages.
        """
        if count_pages < 0:
            raise ConfigError("negative page count_pages")
        if count_pages > self.free_pages(area):
            raise OutOfMemoryError(
                f"{count_pages} pages requested, {self.free_pages(area)} free in {area.name}"
            )
        parts: list[np.ndarray] = []
        left = count_pages
        for order in range(MAX_ORDER + 1):
            if left >> order == 0:
                break
            heads = self.free.take(area, order, left >> order)
            if heads.size:
                parts.append(_expand(heads, order))
                left -= heads.size << order
        if left:
            parts.append(self._split_for(area, left))
        idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        self._assign(idx, kind, owner, zero=zero)
        return self.pages.to_pfn(idx)

    def _split_for(self, area: Area, count: int) -> np.ndarray:
        """Carve ``count`` pages from the front of the smallest block larger than that."""
        for order in range(MAX_ORDER + 1):
            if (1 << order) > count and self.free.block_counts[area, order]:
                head = self.free.pop(area, order)
                assert head is not None
                self._insert_span(area, head + count, head + (1 << order))
                return np.arange(head, head + count, dtype=np.int64)
        raise AssertionError("free page count and free lists disagree")

    def _insert_span(self, area: Area, start: int, end: int) -> None:
        """List the free span [start, end) as its aligned buddy decomposition."""
        while start < end:
            order = min(MAX_ORDER, (start & -start).bit_length() - 1 if start else MAX_ORDER)
            while start + (1 << order) > end:
                order -= 1
            self.free.insert_one(area, order, start)
            start += 1 << order

    def reassign(self, pfns: np.ndarray, kind: PageKind, owner: int) -> None:
        """Give allocated pages a new owner and kind (fresh page indexes and content)."""
        idx = self.pages.to_index(pfns)
        if not np.all(self.pages.state[idx] == PageState.ALLOCATED):
            raise ConfigError("reassign of a page that is not allocated")
        self._assign(idx, kind, owner, zero=False, count=False)

    def _assign(self, idx: np.ndarray, kind: PageKind, owner: int, *, zero: bool = True,
                count: bool = True) -> None:
        pm = self.pages
        first_vpn = self._next_vpn.get(owner, 0)
        self._next_vpn[owner] = first_vpn + idx.size
        self.tick += 1
        vpns = np.arange(first_vpn, first_vpn + idx.size, dtype=np.int64)
        pm.state[idx] = PageState.ALLOCATED
        pm.kind[idx] = kind
        pm.owner[idx] = owner
        pm.vpn[idx] = vpns
        pm.stamp[idx] = self.tick
        pm.pinned[idx] = False
        pm.content[idx] = page_checksums(owner, vpns, self.tick)
        if count:
            self.work.pages_allocated += int(idx.size)
        if zero and kind == PageKind.ANON:
            self.work.bytes_zeroed += int(idx.size) * PAGE_SIZE_BYTES

    # -- freeing -------------------------------------------------------------------------
    def release(self, pfns: np.ndarray | Iterable[int]) -> int:
        """Free allocated (or isolated) pages and coalesce them; returns pages freed."""
        idx = np.unique(self.pages.to_index(np.asarray(pfns, dtype=np.int64)))
        state = self.pages.state[idx]
        if not np.all((state == PageState.ALLOCATED) | (state == PageState.ISOLATED)):
            raise ConfigError("release of a page that is not allocated")
        self.pages.clear(idx, PageState.FREE)
        self.work.pages_freed += int(idx.size)
        if idx.size <= _SCALAR_RELEASE_MAX:
            for i in idx.tolist():
                self._release_one(i)
        else:
            self._release(idx)
        return int(idx.size)

    def release_owner(self, owner: int, kind: PageKind | None = None) -> int:
        """Free every page ``owner`` holds (of ``kind``, if given); returns pages freed."""
        pfns = self.pages_of(owner, kind)
        return self.release(pfns) if pfns.size else 0

    def _release_one(self, head: int) -> None:
        fo, area, order = self.pages.free_order, int(self.pages.area[head]), 0
        while order < MAX_ORDER:
            buddy = head ^ (1 << order)
            if fo[buddy] != order:
                break
            self.free.remove_one(area, order, buddy)
            head = min(head, buddy)
            order += 1
        self.free.insert_one(area, order, head)

    def _release(self, idx: np.ndarray) -> None:
        """Vectorized coalescing of free, unlisted pages ``idx`` (sorted, unique offsets)."""
        heads, fo = np.sort(idx), self.pages.free_order
        for order in range(MAX_ORDER + 1):
            if not heads.size:
                return
            if order == MAX_ORDER:
                self._insert_by_area(order, heads)
                return
            buddy = heads ^ (1 << order)
            listed = fo[buddy] == order
            pos = np.minimum(np.searchsorted(heads, buddy), heads.size - 1)
            merge = listed | (heads[pos] == buddy)
            self._remove_by_area(order, buddy[listed])
            self._insert_by_area(order, heads[~merge])
            merged = heads[merge] & ~(1 << order)  # sorted, pairs are adjacent
            heads = merged[np.r_[True, merged[1:] != merged[:-1]]] if merged.size else merged

    def _insert_by_area(self, order: int, heads: np.ndarray) -> None:
        if not heads.size:
            return
        areas = self.pages.area[heads]
        if areas[0] == areas[-1] and (areas.size < 3 or areas.min() == areas.max()):
            self.free.insert(int(areas[0]), order, heads)  # type: ignore[arg-type]
            return
        for area in Area:
            sel = heads[areas == area]
            if sel.size:
                self.free.insert(area, order, sel)

    def _remove_by_area(self, order: int, heads: np.ndarray) -> None:
        if not heads.size:
            return
        areas = self.pages.area[heads]
        if areas.min() == areas.max():
            self.free.remove(int(areas[0]), order, heads)  # type: ignore[arg-type]
            return
        for area in Area:
            sel = heads[areas == area]
            if sel.size:
                self.free.remove(area, order, sel)

    # -- isolation (for contiguous allocation) -------------------------------------------
    def isolate_free(self, start_pfn: int, count: int) -> np.ndarray:
        """Take every free page of an aligned range off the free lists; returns their PFNs."""
        idx = self._aligned_range(start_pfn, count)
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        heads = np.flatnonzero(self.pages.free_order[lo:hi] >= 0).astype(np.int64) + lo
        orders = self.pages.free_order[heads]
        for order in range(MAX_ORDER + 1):
            self._remove_by_area(order, heads[orders == order])
        free_idx = np.flatnonzero(self.pages.state[lo:hi] == PageState.FREE) + lo
        self.pages.state[free_idx] = PageState.ISOLATED
        return self.pages.to_pfn(free_idx)

    def claim_isolated(self, pfns: np.ndarray, kind: PageKind, owner: int) -> None:
        """Turn isolated pages into an allocation of ``owner``."""
        idx = self.pages.to_index(pfns)
        if not np.all(self.pages.state[idx] == PageState.ISOLATED):
            raise ConfigError("claim of a page that is not isolated")
        self._assign(idx, kind, owner)

    # -- pinning -------------------------------------------------------------------------
    def set_pinned(self, pfns: np.ndarray, pinned: bool = True) -> None:
        """Mark allocated pages as long-term pinned (not migratable), or unpin them."""
        idx = self.pages.to_index(pfns)
        if not np.all(self.pages.state[idx] == PageState.ALLOCATED):
            raise ConfigError("only allocated pages can be pinned")
        self.pages.pinned[idx] = pinned

    # -- consistency ---------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise AssertionError when the arrays and free lists disagree (used by tests)."""
        pm = self.pages
        covered = np.zeros(pm.total_pages, dtype=np.int32)
        heads = np.flatnonzero(pm.free_order >= 0)
        orders = pm.free_order[heads].astype(np.int64)
        for order in range(MAX_ORDER + 1):
            sel = heads[orders == order]
            assert np.all(sel % (1 << order) == 0), "misaligned free block"
            for area in Area:
                n_listed = np.count_nonzero(pm.area[sel] == area)
                assert n_listed == self.free.block_counts[area, order], "free count mismatch"
            if sel.size:
                span = _expand(sel, order)
                np.add.at(covered, span, 1)
                assert np.all(pm.area[span] == np.repeat(pm.area[sel], 1 << order))
                if order < MAX_ORDER:
                    assert not np.any(pm.free_order[sel ^ (1 << order)] == order), \
                        "two free buddies not coalesced"
        assert covered.max(initial=0) <= 1, "page in two free blocks"
        is_free = pm.state == PageState.FREE
        assert np.array_equal(covered == 1, is_free), "free state and free lists disagree"
        assert np.all(pm.owner[is_free] == -1), "free page with an owner"


def _expand(heads: np.ndarray, order: int) -> np.ndarray:
    """Page offsets covered by blocks of ``order`` starting at ``heads``."""
    return (heads[:, None] + np.arange(1 << order, dtype=np.int64)).ravel()
