"""Content checksums standing in for page bytes in the normal-world model.

A page's checksum is derived from (owner, page index, allocation tick) with the splitmix64
finalizer, so every page allocated in a run has a distinct, reproducible identity that
migration must carry along unchanged.
"""

from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1


def page_checksums(owner: int, vpns: np.ndarray, tick: int) -> np.ndarray:
    """Checksums for pages ``vpns`` of ``owner`` allocated at ``tick`` (uint64 array)."""
    seed = np.uint64((owner * 0x9E3779B97F4A7C15 + tick * 0xBF58476D1CE4E5B9) & _MASK)
    with np.errstate(over="ignore"):
        x = vpns.astype(np.uint64) + seed
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))
