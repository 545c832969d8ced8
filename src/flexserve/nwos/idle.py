"""The normal world's idle policy for on-demand protection (ODP).

The monitor has no clock: ``ODP_DISABLE_S2`` takes the idleness the caller measured and
refuses it below the idle window (``DENIED``) or while any Flex-Mem frame or the secure NPU is
in use (``BUSY``). :class:`IdleGovernor` is the kernel side that measures: it is told when
the device works and when time passes idle, and once the idle time reaches the window it
asks EL3 to switch stage-2 off, again after every further window while the answer is
``BUSY`` (the cache may have been reclaimed meanwhile). Stage-2 comes back by itself: the next
Flex service verifies the EL2 region and re-enables it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.errors import ConfigError
from flexserve.monitor.platform import NormalWorld
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcStatus


@dataclass
class IdleCounters:
    disable_attempts: int = 0
    disabled: int = 0  # times stage-2 went off
    refused_busy: int = 0  # secure memory or the NPU was still held


class IdleGovernor:
    """Feeds measured idleness to ODP (see the module docstring)."""

    def __init__(self, normal: NormalWorld, window_s: float) -> None:
        if window_s <= 0:
            raise ConfigError("the idle window must be > 0 s")
        self.normal, self.window_s = normal, window_s
        self.idle_s = 0.0
        self.counters = IdleCounters()
        self._attempts_this_idle = 0

    @property
    def stage2_enabled(self) -> bool:
        result = self.normal.smc(FunctionId.ODP_STATUS)
        return bool(result.values[0]) if result.ok and result.values else True

    def busy(self) -> None:
        """The device worked: idleness starts again from zero."""
        self.idle_s = 0.0
        self._attempts_this_idle = 0

    def idle(self, seconds: float) -> SmcStatus | None:
        """``seconds`` passed with nothing running; the ODP answer if it was asked."""
        if seconds < 0:
            raise ConfigError("idle time must be >= 0 s")
        self.idle_s += seconds
        due = int(self.idle_s // self.window_s)
        if due <= self._attempts_this_idle or not self.stage2_enabled:
            return None
        self._attempts_this_idle = due
        self.counters.disable_attempts += 1
        status = self.normal.smc(FunctionId.ODP_DISABLE_S2, int(self.idle_s * 1000)).status
        if status is SmcStatus.SUCCESS:
            self.counters.disabled += 1
        elif status is SmcStatus.BUSY:
            self.counters.refused_busy += 1
        return status
