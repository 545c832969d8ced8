"""Page-level vocabulary of the normal-world OS: sizes, orders, states, kinds and areas."""

from __future__ import annotations

from enum import IntEnum

PAGE_SIZE_BYTES = 4096
MAX_ORDER = 10  # largest buddy block: 2**10 pages = 4 MiB
MAX_ORDER_PAGES = 1 << MAX_ORDER
NO_OWNER = -1


class PageState(IntEnum):
    """Who may use a page frame right now."""

    FREE = 0       # on a buddy free list
    ALLOCATED = 1  # handed out by the buddy allocator
    RESERVED = 2   # never managed by the buddy allocator (firmware, TZASC carve-outs)
    ISOLATED = 3   # taken off the free lists by a contiguous allocation in progress


class PageKind(IntEnum):
    """What an allocated page holds; decides whether it can move or be reclaimed."""

    NONE = 0            # free or reserved
    ANON = 1            # movable anonymous memory of an app (swappable)
    PAGE_CACHE = 2      # movable clean file cache (droppable)
    KERNEL = 3          # unmovable kernel memory (slab, page tables, driver buffers)
    FLEXMEM = 4         # handed to the secure world as Flex-Mem (unmovable, not mapped)
    CONTIG = 5          # part of a contiguous (CMA) allocation


MOVABLE_KINDS = (PageKind.ANON, PageKind.PAGE_CACHE)


class Area(IntEnum):
    """Free-list area a page belongs to: ordinary memory or the CMA region."""

    NORMAL = 0
    CMA = 1


def pages_for_bytes(size_bytes: int) -> int:
    """Number of 4 KiB pages needed to hold ``size_bytes``."""
    return -(-size_bytes // PAGE_SIZE_BYTES)


def order_pages(order: int) -> int:
    """Pages in a buddy block of ``order``."""
    return 1 << order
