"""Placement policy: which free-list areas an allocation of a given kind may draw from.

Only movable pages (anonymous memory, page cache) may live in the CMA area, so that a
contiguous allocation can always move them out. A movable request is split between the areas
in proportion to their free pages, which keeps CMA as busy as the rest of memory (the
behavior Linux aims for when it prefers CMA once it holds over half the free memory).
"""

from __future__ import annotations

from flexserve.nwos.page import MOVABLE_KINDS, Area, PageKind


def allowed_areas(kind: PageKind) -> tuple[Area, ...]:
    return (Area.NORMAL, Area.CMA) if kind in MOVABLE_KINDS else (Area.NORMAL,)


def split_request(count_pages: int, kind: PageKind,
                  free_by_area: dict[Area, int]) -> dict[Area, int]:
    """Pages to take from each allowed area (which must hold ``count_pages`` free)."""
    areas = allowed_areas(kind)
    total_free = sum(free_by_area[a] for a in areas)
    plan: dict[Area, int] = {}
    left = count_pages
    for area in areas[1:]:
        share = count_pages * free_by_area[area] // total_free if total_free else 0
        plan[area] = min(share, free_by_area[area])
        left -= plan[area]
    plan[areas[0]] = left
    if left > free_by_area[areas[0]]:  # rounding pushed too much onto the first area
        spill = left - free_by_area[areas[0]]
        plan[areas[0]] -= spill
        for area in areas[1:]:
            extra = min(spill, free_by_area[area] - plan[area])
            plan[area] += extra
            spill -= extra
    return plan
