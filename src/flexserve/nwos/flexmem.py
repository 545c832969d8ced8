"""The kernel-level Flex-Mem manager: ``rsmem_alloc`` / ``rsmem_reclaim`` on the OS side.

rsmem_alloc: allocate ordinary pages (no contiguity), ask the monitor to protect them
(FLEXMEM_PROTECT), hand the IPA list to the secure side. Under memory pressure the manager
is a shrinker: it calls the secure side's registered ``rsmem_reclaim(size_bytes)``, which
answers with the IPA pages it let go of; FLEXMEM_RELEASE brings those frames back (the
monitor zeroes them) and the pages return to the buddy allocator.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from flexserve.errors import ConfigError, SMCError
from flexserve.monitor.platform import NormalWorld
from flexserve.nwos.events import EventKind
from flexserve.nwos.kernel import NormalWorldKernel
from flexserve.nwos.owners import FLEXMEM_OWNER
from flexserve.nwos.page import PAGE_SIZE_BYTES, PageKind, pages_for_bytes
from flexserve.soc.work import WorkRecord

#: The secure side's reclaim entry: asked for ``size_bytes``, returns the IPA pages it
#: scrubbed and unmapped (possibly fewer, possibly none).
ReclaimCallback = Callable[[int], np.ndarray]

NOT_LENT = -1


class FlexMemManager:
    """Lends normal pages to secure owners and takes them back on demand."""

    name = "secure"  # as a shrinker

    def __init__(self, kernel: NormalWorldKernel, normal: NormalWorld) -> None:
        self.kernel, self.normal = kernel, normal
        self.work = WorkRecord()  # SMC-side work; page-allocator work stays in kernel.work
        self._lent_to = np.full(kernel.buddy.total_pages, NOT_LENT, dtype=np.int16)
        self._reclaimers: dict[int, ReclaimCallback] = {}
        kernel.register_shrinker(self)

    # -- secure side registration ------------------------------------------------------
    def register_reclaimer(self, owner: int, callback: ReclaimCallback) -> None:
        self._reclaimers[owner] = callback

    def lent_pages(self, owner: int | None = None) -> int:
        if owner is None:
            return int(np.count_nonzero(self._lent_to != NOT_LENT))
        return int(np.count_nonzero(self._lent_to == owner))

    # -- rsmem_alloc -------------------------------------------------------------------
    def rsmem_alloc(self, owner: int, size_bytes: int) -> np.ndarray:
        """Protect ``size_bytes`` (rounded up to pages) for ``owner``; returns the IPA pages."""
        if size_bytes <= 0:
            raise ConfigError("rsmem_alloc size must be > 0")
        count = pages_for_bytes(size_bytes)
        # never satisfy the secure side by reclaiming the secure side's own memory
        pfns = self.kernel.alloc(FLEXMEM_OWNER, PageKind.FLEXMEM, count,
                                 exclude_shrinkers=(self.name,))
        try:
            self.work += self.normal.flexmem_protect(owner, pfns)
        except SMCError:
            self.kernel.free(pfns)
            raise
        self._lent_to[self.kernel.buddy.pages.to_index(pfns)] = owner
        self.kernel.events.record(EventKind.FLEXMEM_ALLOC, count, f"owner {owner}")
        return pfns

    # -- returns -----------------------------------------------------------------------
    def rsmem_free(self, owner: int, ipa_pages: np.ndarray) -> int:
        """Take back pages ``owner`` has scrubbed and unmapped; returns pages freed."""
        pfns = np.unique(np.asarray(ipa_pages, dtype=np.int64))
        if not pfns.size:
            return 0
        idx = self.kernel.buddy.pages.to_index(pfns)
        if np.any(self._lent_to[idx] != owner):
            raise ConfigError("secure side returned pages it was not lent")
        self.work += self.normal.flexmem_release(owner, pfns)
        self._lent_to[idx] = NOT_LENT
        freed = self.kernel.free(pfns)
        self.kernel.events.record(EventKind.FLEXMEM_RETURN, freed, f"owner {owner}")
        return freed

    # -- rsmem_reclaim (shrinker) ------------------------------------------------------
    def shrink(self, pages: int) -> int:
        """Ask secure owners (largest holder first) to give back ``pages`` pages."""
        freed = 0
        for owner in sorted(self._reclaimers, key=self.lent_pages, reverse=True):
            if freed >= pages:
                break
            if not self.lent_pages(owner):
                continue
            returned = self._reclaimers[owner]((pages - freed) * PAGE_SIZE_BYTES)
            # not counted as pages_reclaimed: that is an LRU reclaim's cost, while this one is
            # the secure side's scrub, the monitor's release and the buddy's free, each
            # recorded by its own mechanism
            got = self.rsmem_free(owner, returned)
            if got:
                self.kernel.events.record(EventKind.SECURE_RECLAIM, got, f"owner {owner}")
            freed += got
        return freed
