"""Per-frame metadata of the normal-world OS, held in numpy arrays (one slot per page).

Indexes into the arrays are *offsets* from ``base_pfn``; the public allocator API speaks in
absolute PFNs and converts at its edge. The arrays are the single source of truth: free lists
and app bookkeeping are indexes derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexserve.errors import ConfigError
from flexserve.nwos.page import MAX_ORDER_PAGES, NO_OWNER, Area, PageKind, PageState


@dataclass
class PageMap:
    """Structure-of-arrays description of every managed page frame."""

    base_pfn: int
    state: np.ndarray      # uint8 PageState
    kind: np.ndarray       # uint8 PageKind
    area: np.ndarray       # uint8 Area
    pinned: np.ndarray     # bool: long-term pinned (e.g. for DMA), cannot migrate
    owner: np.ndarray      # int32 owner id, NO_OWNER when free
    vpn: np.ndarray        # int64 page index inside the owner's address space
    content: np.ndarray    # uint64 checksum of the page's content (identity across moves)
    stamp: np.ndarray      # int64 last-use tick (LRU age)
    free_order: np.ndarray  # int8 order of the free block whose head this is, else -1

    @classmethod
    def create(cls, base_pfn: int, total_pages: int) -> PageMap:
        if base_pfn % MAX_ORDER_PAGES or total_pages % MAX_ORDER_PAGES or total_pages <= 0:
            raise ConfigError(
                f"managed range must be aligned to and sized in {MAX_ORDER_PAGES}-page blocks"
            )
        return cls(
            base_pfn=base_pfn,
            state=np.full(total_pages, PageState.RESERVED, dtype=np.uint8),
            kind=np.zeros(total_pages, dtype=np.uint8),
            area=np.full(total_pages, Area.NORMAL, dtype=np.uint8),
            pinned=np.zeros(total_pages, dtype=bool),
            owner=np.full(total_pages, NO_OWNER, dtype=np.int32),
            vpn=np.full(total_pages, -1, dtype=np.int64),
            content=np.zeros(total_pages, dtype=np.uint64),
            stamp=np.zeros(total_pages, dtype=np.int64),
            free_order=np.full(total_pages, -1, dtype=np.int8),
        )

    @property
    def total_pages(self) -> int:
        return int(self.state.size)

    def to_index(self, pfns: np.ndarray | int) -> np.ndarray:
        """Offsets of absolute PFNs; raises ConfigError for PFNs outside the range."""
        idx = np.asarray(pfns, dtype=np.int64) - self.base_pfn
        if idx.size and (idx.min() < 0 or idx.max() >= self.total_pages):
            raise ConfigError("PFN outside the managed range")
        return idx

    def to_pfn(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(idx, dtype=np.int64) + self.base_pfn

    def clear(self, idx: np.ndarray, state: PageState) -> None:
        """Forget who used the pages at ``idx`` and give them ``state``."""
        self.state[idx] = state
        self.kind[idx] = PageKind.NONE
        self.pinned[idx] = False
        self.owner[idx] = NO_OWNER
        self.vpn[idx] = -1
        self.content[idx] = 0

    def move(self, src: np.ndarray, dst: np.ndarray) -> None:
        """Copy the identity of pages ``src`` onto ``dst`` (the metadata half of migration)."""
        for arr in (self.state, self.kind, self.pinned, self.owner, self.vpn,
                    self.content, self.stamp):
            arr[dst] = arr[src]
