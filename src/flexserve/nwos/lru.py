"""Victim selection for reclaim: least recently used pages first (the policy half)."""

from __future__ import annotations

import numpy as np

from flexserve.nwos.page import PageKind, PageState
from flexserve.nwos.pagemap import PageMap


def oldest_pages(pages: PageMap, kind: PageKind, count: int) -> np.ndarray:
    """Offsets of up to ``count`` unpinned allocated pages of ``kind``, oldest stamp first."""
    cand = np.flatnonzero(
        (pages.kind == kind) & (pages.state == PageState.ALLOCATED) & ~pages.pinned
    )
    if count >= cand.size:
        return cand
    if count <= 0:
        return cand[:0]
    part = np.argpartition(pages.stamp[cand], count - 1)[:count]
    return np.sort(cand[part])
