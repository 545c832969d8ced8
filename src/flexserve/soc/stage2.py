"""A stage-2 translation table: IPA page -> PA page plus permissions, as numpy arrays.

The table is pure mechanism: it maps, unmaps and translates. Who may change it is the
monitor's business. The arrays may be views into firmware memory (the EL2 region), so the
bytes a bus write changes are the bytes translation reads.
"""

from __future__ import annotations

import numpy as np

from flexserve.errors import PermissionFault, TranslationFault
from flexserve.soc.access import Access, Perm
from flexserve.soc.constants import FRAME_SHIFT, NO_FRAME, pages_spanned

PA_DTYPE = np.int32
PERM_DTYPE = np.uint8


class Stage2Table:
    """Translation table over ``page_count`` IPA pages."""

    def __init__(self, pa_pages: np.ndarray, perms: np.ndarray, name: str = "s2pt") -> None:
        if pa_pages.shape != perms.shape or pa_pages.dtype != PA_DTYPE \
                or perms.dtype != PERM_DTYPE:
            raise ValueError("stage-2 arrays must be int32/uint8 of equal shape")
        self.pa_pages = pa_pages
        self.perms = perms
        self.name = name

    @classmethod
    def allocate(cls, page_count: int, name: str = "s2pt") -> Stage2Table:
        """A table with its own (host) storage, all entries invalid."""
        table = cls(np.empty(page_count, dtype=PA_DTYPE),
                    np.empty(page_count, dtype=PERM_DTYPE), name)
        table.clear()
        return table

    @property
    def page_count(self) -> int:
        return int(self.pa_pages.size)

    def clear(self) -> int:
        """Invalidate every entry; returns how many were valid."""
        valid = int(np.count_nonzero(self.pa_pages >= 0))
        self.pa_pages[:] = NO_FRAME
        self.perms[:] = Perm.NONE
        return valid

    # ----- updates (vectorized) -----
    def map_pages(self, ipa_pages: np.ndarray, pa_pages: np.ndarray, perm: Perm) -> int:
        """Map each ``ipa_pages[i]`` to ``pa_pages[i]``; returns entries changed."""
        ipa_pages = self._checked_pages(ipa_pages)
        self.pa_pages[ipa_pages] = np.asarray(pa_pages, dtype=PA_DTYPE)
        self.perms[ipa_pages] = int(perm)
        return int(ipa_pages.size)

    def unmap_pages(self, ipa_pages: np.ndarray) -> int:
        """Invalidate the entries; returns how many were valid before."""
        ipa_pages = self._checked_pages(ipa_pages)
        changed = int(np.count_nonzero(self.pa_pages[ipa_pages] >= 0))
        self.pa_pages[ipa_pages] = NO_FRAME
        self.perms[ipa_pages] = Perm.NONE
        return changed

    def _checked_pages(self, ipa_pages: np.ndarray) -> np.ndarray:
        ipa_pages = np.asarray(ipa_pages, dtype=np.int64)
        if ipa_pages.size and (ipa_pages.min() < 0 or ipa_pages.max() >= self.page_count):
            raise TranslationFault(f"{self.name}: IPA page outside the table")
        return ipa_pages

    # ----- lookups -----
    def lookup(self, ipa_pages: np.ndarray) -> np.ndarray:
        """PA page of each IPA page, ``NO_FRAME`` where unmapped or out of range."""
        ipa_pages = np.asarray(ipa_pages, dtype=np.int64)
        out = np.full(ipa_pages.shape, NO_FRAME, dtype=np.int64)
        inside = (ipa_pages >= 0) & (ipa_pages < self.page_count)
        out[inside] = self.pa_pages[ipa_pages[inside]]
        return out

    def translate_pages(self, ipa_pages: np.ndarray, access: Access) -> np.ndarray:
        """Walk the table for every page; raise on the first missing or forbidden entry."""
        ipa_pages = np.asarray(ipa_pages, dtype=np.int64)
        pa_pages = self.lookup(ipa_pages)
        if np.any(pa_pages < 0):
            raise TranslationFault(f"{self.name}: no mapping")
        allowed = self.perms[ipa_pages] & int(access.required)
        if not np.all(allowed):
            raise PermissionFault(f"{self.name}: {access.name.lower()} not permitted")
        return pa_pages

    def translate_range(self, ipa: int, size_bytes: int, access: Access) -> np.ndarray:
        """PA pages backing the IPA byte range ``[ipa, ipa + size_bytes)``."""
        if ipa < 0:
            raise TranslationFault(f"{self.name}: negative address")
        first_page, page_count = pages_spanned(ipa, size_bytes)
        if first_page + page_count > self.page_count:
            raise TranslationFault(f"{self.name}: address outside the table")
        return self.translate_pages(np.arange(first_page, first_page + page_count), access)

    def translate(self, ipa: int, access: Access) -> int:
        """Physical address of one byte."""
        pa_page = int(self.translate_range(ipa, 1, access)[0])
        return (pa_page << FRAME_SHIFT) | (ipa & ((1 << FRAME_SHIFT) - 1))

    def mapped_ipa_pages(self) -> np.ndarray:
        return np.flatnonzero(self.pa_pages >= 0)
