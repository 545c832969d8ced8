"""Allocation handles that survive migration and reclaim of the pages they name."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexserve.nwos.kernel import NormalWorldKernel
from flexserve.nwos.page import PageState


@dataclass
class Allocation:
    """Pages allocated to ``owner`` in one call: PFN hints plus the pages' identities."""

    owner: int
    pfns: np.ndarray
    vpns: np.ndarray

    @classmethod
    def of(cls, kernel: NormalWorldKernel, owner: int, pfns: np.ndarray) -> Allocation:
        vpns = kernel.buddy.pages.vpn[kernel.buddy.pages.to_index(pfns)].copy()
        return cls(owner, pfns, vpns)

    def resident_pfns(self, kernel: NormalWorldKernel) -> np.ndarray:
        """Where the pages are now. Fast when nothing moved; a scan otherwise."""
        pm = kernel.buddy.pages
        idx = pm.to_index(self.pfns)
        still = ((pm.owner[idx] == self.owner) & (pm.vpn[idx] == self.vpns)
                 & (pm.state[idx] == PageState.ALLOCATED))
        if still.all():
            return self.pfns
        mine = np.flatnonzero((pm.owner == self.owner) & (pm.state == PageState.ALLOCATED))
        return pm.to_pfn(mine[np.isin(pm.vpn[mine], self.vpns)])

    def free(self, kernel: NormalWorldKernel) -> int:
        """Free the pages still resident (swapped or dropped ones are already gone)."""
        pfns = self.resident_pfns(kernel)
        return kernel.free(pfns) if pfns.size else 0
