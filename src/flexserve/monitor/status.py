"""SMC return codes and the result of one call."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from flexserve.soc.work import WorkRecord


class SmcStatus(enum.IntEnum):
    """Returned in x0. Negative values follow the SMCCC convention."""

    SUCCESS = 0
    NOT_SUPPORTED = -1
    NOT_REQUIRED = -2
    INVALID_PARAMETER = -3
    DENIED = -4
    BUSY = -5


@dataclass(frozen=True)
class SmcResult:
    """x0 status, x1.. return values, and the work the call performed."""

    status: SmcStatus
    values: tuple[int, ...] = ()
    work: WorkRecord = field(default_factory=WorkRecord)

    @property
    def ok(self) -> bool:
        return self.status is SmcStatus.SUCCESS
