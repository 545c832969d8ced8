"""Fragmentation metrics over the free lists."""

from __future__ import annotations

import numpy as np

from flexserve.nwos.page import MAX_ORDER


def unusable_free_index(free_blocks_per_order: np.ndarray, order: int) -> float:
    """Share of free pages that sit in blocks smaller than ``order`` (0: none, 1: all).

    The "unusable free space index" of the fragmentation literature: how much of the free
    memory cannot serve a request of ``2**order`` contiguous pages.
    """
    sizes = 1 << np.arange(MAX_ORDER + 1, dtype=np.int64)
    pages = free_blocks_per_order.astype(np.int64) * sizes
    total = int(pages.sum())
    return 0.0 if total == 0 else float(pages[:order].sum()) / total
