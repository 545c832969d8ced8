"""Copy-then-verify of SMC arguments coming from the normal world.

Registers are 64-bit: anything that is not an ``int`` in ``[0, 2**64)`` is refused.
Page lists travel in a shared buffer (here: the call's ``payload``); the monitor copies
it into its own array first and validates only the copy, so the caller cannot change it
between check and use.
"""

from __future__ import annotations

import numpy as np

from flexserve.monitor.core import refuse
from flexserve.monitor.status import SmcStatus
from flexserve.soc.constants import U64_LIMIT

INT63_LIMIT = 1 << 63


def is_register_value(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < U64_LIMIT


def check_range(value: int, low: int, high: int) -> int:
    """``value`` in ``[low, high]`` or INVALID_PARAMETER."""
    if not low <= value <= high:
        refuse(SmcStatus.INVALID_PARAMETER)
    return value


def copy_page_list(payload: object, count: int, page_limit: int) -> np.ndarray:
    """A private int64 copy of ``count`` distinct page numbers, each below ``page_limit``."""
    if count < 1 or count > page_limit:
        refuse(SmcStatus.INVALID_PARAMETER)
    pages = _copy_integers(payload)
    if pages.size != count or pages.min() < 0 or pages.max() >= page_limit:
        refuse(SmcStatus.INVALID_PARAMETER)
    if not all_distinct(pages, page_limit):
        refuse(SmcStatus.INVALID_PARAMETER)
    return pages


def _copy_integers(payload: object) -> np.ndarray:
    if isinstance(payload, np.ndarray):
        if payload.ndim != 1 or payload.dtype.kind not in "iu" or payload.size == 0:
            refuse(SmcStatus.INVALID_PARAMETER)
        if payload.dtype.kind == "u" and payload.max() >= INT63_LIMIT:
            refuse(SmcStatus.INVALID_PARAMETER)
        return payload.astype(np.int64, copy=True)
    if not isinstance(payload, list | tuple) or not payload:
        refuse(SmcStatus.INVALID_PARAMETER)
    items = list(payload)
    if not all(_is_page_number(v) for v in items):
        refuse(SmcStatus.INVALID_PARAMETER)
    return np.array(items, dtype=np.int64)


def _is_page_number(value: object) -> bool:
    integral = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    return integral and 0 <= int(value) < INT63_LIMIT  # type: ignore[arg-type]


def all_distinct(pages: np.ndarray, page_limit: int) -> bool:
    """O(n) duplicate check with a scratch bitmap (pages already bounds-checked)."""
    seen = np.zeros(page_limit, dtype=bool)
    seen[pages] = True
    return int(np.count_nonzero(seen)) == pages.size
