"""TrustZone Address Space Controller: a few contiguous secure DRAM regions.

Classic TrustZone: every non-secure transaction (CPU or DMA) whose physical frame lies in
an enabled region is refused at the memory controller, whatever the page tables say.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexserve.errors import ConfigError, PermissionFault

TZASC_REGION_COUNT = 8


@dataclass(frozen=True)
class TzascRegion:
    """Secure frames ``[base_frame, base_frame + frame_count)``."""

    base_frame: int
    frame_count: int

    @property
    def end_frame(self) -> int:
        return self.base_frame + self.frame_count

    def overlaps(self, other: TzascRegion) -> bool:
        return self.base_frame < other.end_frame and other.base_frame < self.end_frame


class Tzasc:
    """Eight region slots; programming them is reserved to EL3 (the monitor)."""

    def __init__(self, dram_frame_count: int) -> None:
        self.dram_frame_count = dram_frame_count
        self.regions: list[TzascRegion | None] = [None] * TZASC_REGION_COUNT

    def set_region(self, index: int, region: TzascRegion) -> None:
        if not 0 <= index < TZASC_REGION_COUNT:
            raise ConfigError("TZASC region index out of range")
        if region.frame_count <= 0 or region.base_frame < 0 \
                or region.end_frame > self.dram_frame_count:
            raise ConfigError("TZASC region outside DRAM")
        for slot, other in enumerate(self.regions):
            if other is not None and slot != index and other.overlaps(region):
                raise ConfigError("TZASC regions overlap")
        self.regions[index] = region

    def clear_region(self, index: int) -> TzascRegion | None:
        if not 0 <= index < TZASC_REGION_COUNT:
            raise ConfigError("TZASC region index out of range")
        old, self.regions[index] = self.regions[index], None
        return old

    def free_slots(self) -> list[int]:
        return [i for i, region in enumerate(self.regions) if region is None]

    def secure_mask(self, pa_pages: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``pa_pages`` lie in a secure region."""
        pa_pages = np.asarray(pa_pages, dtype=np.int64)
        mask = np.zeros(pa_pages.shape, dtype=bool)
        for region in self.regions:
            if region is not None:
                mask |= (pa_pages >= region.base_frame) & (pa_pages < region.end_frame)
        return mask

    def check_nonsecure(self, pa_pages: np.ndarray) -> None:
        """Refuse a non-secure transaction touching any secure frame."""
        if np.any(self.secure_mask(pa_pages)):
            raise PermissionFault("TZASC: non-secure access to secure memory")
