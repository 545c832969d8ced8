"""Page migration mechanism: move movable pages' identity and content to new frames."""

from __future__ import annotations

import numpy as np

from flexserve.nwos.buddy import BuddyAllocator
from flexserve.nwos.page import MOVABLE_KINDS, PAGE_SIZE_BYTES, PageState


def migratable(buddy: BuddyAllocator, idx: np.ndarray) -> np.ndarray:
    """Mask over offsets ``idx``: allocated, movable kind and not pinned."""
    pm = buddy.pages
    movable = np.isin(pm.kind[idx], np.array(MOVABLE_KINDS, dtype=np.uint8))
    return (pm.state[idx] == PageState.ALLOCATED) & movable & ~pm.pinned[idx]


def migrate(buddy: BuddyAllocator, src_pfns: np.ndarray, dst_pfns: np.ndarray) -> None:
    """Copy owner, page index, kind, age and content of ``src`` onto freshly allocated ``dst``.

    The source frames are left ISOLATED (owned by nobody) for the caller to claim or free.
    """
    pm = buddy.pages
    src, dst = pm.to_index(src_pfns), pm.to_index(dst_pfns)
    pm.move(src, dst)
    pm.clear(src, PageState.ISOLATED)
    buddy.work.pages_migrated += int(src.size)
    buddy.work.bytes_copied += int(src.size) * PAGE_SIZE_BYTES
