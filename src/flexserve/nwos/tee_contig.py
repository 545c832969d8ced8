"""Contiguous memory for the secure side (the strawman designs' secure-memory driver).

Classic TrustZone can only protect a few physically contiguous regions (TZASC), so a secure
world that needs memory on demand asks the normal world for contiguous ranges out of a CMA
region reserved at boot; the normal world migrates the movable tenants out and hands the
range over; the secure side turns it into a TZASC region. This is the RPC server for that
(as the Flex-Mem manager is for ``rsmem_alloc``). Ranges are whole 4 MiB blocks so that a
range can grow in place by the blocks right after it (a pipelined strawman grows its region
layer by layer).
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.errors import ConfigError
from flexserve.nwos.cma import ContigAllocation, ContigRegion
from flexserve.nwos.page import MAX_ORDER_PAGES, pages_for_bytes


def _whole_blocks(size_bytes: int) -> int:
    if size_bytes <= 0:
        raise ConfigError("contiguous secure memory size must be > 0")
    pages = pages_for_bytes(size_bytes)
    return -(-pages // MAX_ORDER_PAGES) * MAX_ORDER_PAGES


@dataclass
class _Lent:
    owner: int
    allocation: ContigAllocation


class TeeContigService:
    """Hands contiguous CMA ranges to secure owners; each range is known by its first PFN."""

    def __init__(self, region: ContigRegion) -> None:
        self.region = region
        self._lent: dict[int, _Lent] = {}

    def lent_pages(self) -> int:
        return sum(lent.allocation.count_pages for lent in self._lent.values())

    def contig_alloc(self, owner: int, size_bytes: int) -> tuple[int, int]:
        """A contiguous range of at least ``size_bytes``: ``(first_pfn, pages)``."""
        allocation = self.region.alloc(_whole_blocks(size_bytes))
        self._lent[allocation.start_pfn] = _Lent(owner, allocation)
        return allocation.start_pfn, allocation.count_pages

    def contig_grow(self, owner: int, first_pfn: int, extra_bytes: int) -> int:
        """Grow the range at ``first_pfn`` in place; returns its new page count."""
        lent = self._lent_of(owner, first_pfn)
        lent.allocation = self.region.grow(lent.allocation, _whole_blocks(extra_bytes))
        return lent.allocation.count_pages

    def contig_free(self, owner: int, first_pfn: int) -> int:
        """Take back a range the secure side has released (the monitor scrubbed it)."""
        lent = self._lent_of(owner, first_pfn)
        del self._lent[first_pfn]
        self.region.release(lent.allocation)
        return lent.allocation.count_pages

    def _lent_of(self, owner: int, first_pfn: int) -> _Lent:
        lent = self._lent.get(first_pfn)
        if lent is None or lent.owner != owner:
            raise ConfigError("no contiguous range of this owner starts there")
        return lent
