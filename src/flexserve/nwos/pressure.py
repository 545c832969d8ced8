"""Memory-pressure handling: reclaim in a configured order, then kill, then fail.

Policy is data (:class:`PressurePolicy`); the handler only sequences the mechanisms it is
given (shrinkers and a kill callback).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from flexserve.errors import OutOfMemoryError
from flexserve.nwos.apps import App
from flexserve.nwos.events import EventKind, EventLog
from flexserve.nwos.shrinkers import Shrinker
from flexserve.nwos.watermarks import Watermarks

DEFAULT_SHRINKER_ORDER = ("page_cache", "secure", "swap")


@dataclass(frozen=True)
class PressurePolicy:
    """Order in which reclaim sources are tried, and whether the killer may run.

    Default: clean page cache first (free to drop), then Flex-Mem via ``rsmem_reclaim`` (weights
    are re-readable from flash; the secure side chooses its own victims), then swap (costs flash
    writes), then the low-memory killer.
    """

    shrinker_order: tuple[str, ...] = DEFAULT_SHRINKER_ORDER
    kill_enabled: bool = True


class PressureHandler:
    def __init__(self, watermarks: Watermarks, policy: PressurePolicy, events: EventLog) -> None:
        self.watermarks = watermarks
        self.policy = policy
        self.events = events
        self.shrinkers: dict[str, Shrinker] = {}

    def register(self, shrinker: Shrinker) -> None:
        self.shrinkers[shrinker.name] = shrinker

    def make_room(
        self,
        demand_pages: int,
        available: Callable[[], int],
        kill_one: Callable[[], App | None],
        exclude: Collection[str] = (),
    ) -> None:
        """Make ``demand_pages`` allocatable, keeping at least the min watermark free.

        ``available()`` counts the free pages the pending allocation may use. Raises
        OutOfMemoryError when reclaim and killing cannot make enough room.
        """
        wm = self.watermarks
        if available() - demand_pages >= wm.low_pages:
            return
        self.events.record(EventKind.PRESSURE, demand_pages)
        self._reclaim(demand_pages + wm.high_pages, available, exclude)
        while available() - demand_pages < wm.min_pages:
            victim = kill_one() if self.policy.kill_enabled else None
            if victim is None:
                self.events.record(EventKind.OOM, demand_pages)
                raise OutOfMemoryError(
                    f"cannot free {demand_pages} pages: reclaim and killing exhausted"
                )

    def _reclaim(self, target_pages: int, available: Callable[[], int],
                 exclude: Collection[str]) -> None:
        for name in self.policy.shrinker_order:
            shrinker = self.shrinkers.get(name)
            if shrinker is None or name in exclude:
                continue
            while (deficit := target_pages - available()) > 0:
                if shrinker.shrink(deficit) == 0:
                    break
            if target_pages <= available():
                return
