"""Buddy free lists: one per (area, order), exact counts, lazily cleaned candidate stacks.

The truth of "block at offset i is free with order k" is ``pagemap.free_order[i] == k``.
Each free list is a LIFO stack of candidate heads (numpy batches plus single entries). When a
block leaves a list other than by being popped (its buddy merged it, a contiguous allocation
isolated it) the stale entry stays in the stack and is discarded the next time it surfaces.
This keeps insertion, removal and bulk removal O(1) amortized per block without per-page
Python objects, which matters at 4 M pages. A stack is rebuilt from the arrays when stale
entries outnumber live ones.
"""

from __future__ import annotations

import numpy as np

from flexserve.nwos.page import MAX_ORDER, Area
from flexserve.nwos.pagemap import PageMap

_REBUILD_SLACK = 4096


class _Stack:
    """Candidate heads of one free list; entries may be stale or duplicated."""

    def __init__(self) -> None:
        self.singles: list[int] = []
        self.batches: list[np.ndarray] = []
        self.tops: list[int] = []
        self.stored = 0

    def push_one(self, idx: int) -> None:
        self.singles.append(idx)
        self.stored += 1

    def push_many(self, idx: np.ndarray) -> None:
        if idx.size:
            self.batches.append(idx.astype(np.int64, copy=True))
            self.tops.append(int(idx.size))
            self.stored += int(idx.size)

    def reset(self, idx: np.ndarray) -> None:
        self.singles, self.batches, self.tops, self.stored = [], [], [], 0
        self.push_many(idx)


class FreeLists:
    """Free lists of the buddy allocator for every area and order."""

    def __init__(self, pagemap: PageMap) -> None:
        self._pm = pagemap
        self.block_counts = np.zeros((len(Area), MAX_ORDER + 1), dtype=np.int64)
        self.free_page_counts = [0] * len(Area)  # Python ints: read on every allocation
        self._scratch = np.zeros(pagemap.total_pages, dtype=np.int64)  # for de-duplication
        self._stacks = [[_Stack() for _ in range(MAX_ORDER + 1)] for _ in Area]

    # -- insertion and removal of known blocks ------------------------------------------
    def insert(self, area: Area, order: int, heads: np.ndarray) -> None:
        """Mark ``heads`` as free blocks of ``order`` in ``area`` and list them."""
        self._pm.free_order[heads] = order
        self.block_counts[area, order] += heads.size
        self.free_page_counts[area] += int(heads.size) << order
        stack = self._stacks[area][order]
        if heads.size == 1:
            stack.push_one(int(heads[0]))
        else:
            stack.push_many(heads)
        self._maybe_rebuild(area, order)

    def insert_one(self, area: Area, order: int, head: int) -> None:
        """Scalar :meth:`insert` for the single-block fast path."""
        self._pm.free_order[head] = order
        self.block_counts[area, order] += 1
        self.free_page_counts[area] += 1 << order
        self._stacks[area][order].push_one(head)
        self._maybe_rebuild(area, order)

    def remove_one(self, area: Area, order: int, head: int) -> None:
        """Scalar :meth:`remove`."""
        self._pm.free_order[head] = -1
        self.block_counts[area, order] -= 1
        self.free_page_counts[area] -= 1 << order

    def remove(self, area: Area, order: int, heads: np.ndarray) -> None:
        """Unlist free blocks ``heads`` (each must be free with ``order``); entries go stale."""
        self._pm.free_order[heads] = -1
        self.block_counts[area, order] -= heads.size
        self.free_page_counts[area] -= int(heads.size) << order

    # -- taking blocks for allocation ---------------------------------------------------
    def pop(self, area: Area, order: int) -> int | None:
        """Remove and return one free block head of ``order`` (most recently freed first)."""
        if not self.block_counts[area, order]:
            return None
        stack, fo = self._stacks[area][order], self._pm.free_order
        while stack.singles:
            idx = stack.singles.pop()
            stack.stored -= 1
            if fo[idx] == order:
                self.remove_one(area, order, idx)
                return idx
        while stack.batches:
            batch, top = stack.batches[-1], stack.tops[-1]
            while top > 0:
                top -= 1
                stack.stored -= 1
                idx = int(batch[top])
                if fo[idx] == order:
                    stack.tops[-1] = top
                    self.remove_one(area, order, idx)
                    return idx
            stack.batches.pop()
            stack.tops.pop()
        raise AssertionError("free list count and stack disagree")

    def take(self, area: Area, order: int, max_blocks: int) -> np.ndarray:
        """Remove and return up to ``max_blocks`` free block heads of ``order``."""
        want = min(max_blocks, int(self.block_counts[area, order]))
        got: list[np.ndarray] = []
        have = 0
        stack = self._stacks[area][order]
        if stack.singles and want:
            single = np.array(stack.singles, dtype=np.int64)
            stack.stored -= len(stack.singles)
            stack.singles = []
            stack.push_many(single)  # handle uniformly below
        while have < want and stack.batches:
            batch, top = stack.batches[-1], stack.tops[-1]
            lo = max(0, top - 2 * (want - have))
            chunk = batch[lo:top]
            stack.stored -= top - lo
            if lo == 0:
                stack.batches.pop()
                stack.tops.pop()
            else:
                stack.tops[-1] = lo
            live = self._distinct(chunk[self._pm.free_order[chunk] == order])
            extra = live[want - have:]
            live = live[:want - have]
            self.remove(area, order, live)
            got.append(live)
            have += live.size
            if extra.size:
                stack.push_many(extra)
        return np.concatenate(got) if got else np.zeros(0, dtype=np.int64)

    def _distinct(self, heads: np.ndarray) -> np.ndarray:
        """``heads`` without repeated entries, in O(n) (keeps each value's last position)."""
        positions = np.arange(heads.size, dtype=np.int64)
        self._scratch[heads] = positions
        return heads[self._scratch[heads] == positions]

    # -- upkeep ------------------------------------------------------------------------
    def _maybe_rebuild(self, area: Area, order: int) -> None:
        stack = self._stacks[area][order]
        if stack.stored > 2 * self.block_counts[area, order] + _REBUILD_SLACK:
            self.rebuild(area, order)

    def rebuild(self, area: Area, order: int) -> None:
        """Drop stale entries: rescan the arrays for the true free heads."""
        heads = np.flatnonzero((self._pm.free_order == order) & (self._pm.area == area))
        self._stacks[area][order].reset(heads)

    def free_pages(self, area: Area | None = None) -> int:
        if area is None:
            return sum(self.free_page_counts)
        return self.free_page_counts[area]
