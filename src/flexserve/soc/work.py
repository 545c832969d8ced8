"""What a mechanism did, in countable units, for the timing layer to price.

Functional code (hardware, monitor, normal-world OS) has no clock. Each operation returns or
accumulates a :class:`WorkRecord`; the timing layer turns the counts into simulated seconds
with a device profile. Records add up, so a composite operation sums its parts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class WorkRecord:
    """Counts of the work an operation performed. All fields are non-negative integers."""

    frames_touched: int = 0
    bytes_copied: int = 0
    bytes_zeroed: int = 0
    bytes_read_flash: int = 0
    bytes_written_flash: int = 0
    bytes_dma: int = 0
    pages_allocated: int = 0
    pages_freed: int = 0
    pages_migrated: int = 0
    pages_reclaimed: int = 0
    pages_swapped_out: int = 0
    s2pt_entries_changed: int = 0
    smmu_entries_changed: int = 0
    tlb_invalidations: int = 0
    world_switches: int = 0
    smc_calls: int = 0
    npu_mode_switches: int = 0
    npu_jobs: int = 0
    bytes_hashed: int = 0

    def __add__(self, other: WorkRecord) -> WorkRecord:
        return WorkRecord(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                             for f in fields(self)})

    def __sub__(self, other: WorkRecord) -> WorkRecord:
        """The work done between two snapshots of an accumulating record."""
        return WorkRecord(**{f.name: getattr(self, f.name) - getattr(other, f.name)
                             for f in fields(self)})

    def copy(self) -> WorkRecord:
        return WorkRecord(**{f.name: getattr(self, f.name) for f in fields(self)})

    def __iadd__(self, other: WorkRecord) -> WorkRecord:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def nonzero(self) -> dict[str, int]:
        """The fields that are not zero, for logs and assertions."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}
