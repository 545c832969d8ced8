"""Measuring what the mechanisms did during one pipeline step.

Mechanisms keep running totals of their work (``WorkRecord``s); a :class:`WorkMeter` snapshots
named totals before a step and returns the differences after it. The meter is instrumentation
for the timing model (like a hardware performance counter), not a channel the normal world
controls: the device assembly hands it to the framework at boot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flexserve.soc.work import WorkRecord

Snapshot = dict[str, WorkRecord]


class WorkMeter:
    """Named sources of accumulated work (e.g. ``secure``: the secure port's ``work``)."""

    def __init__(self, sources: Mapping[str, Callable[[], WorkRecord]]) -> None:
        self._sources = dict(sources)

    def snapshot(self) -> Snapshot:
        return {name: read().copy() for name, read in self._sources.items()}

    def since(self, before: Snapshot) -> Snapshot:
        """Work done per source since ``before``; sources that did nothing are left out."""
        now = self.snapshot()
        deltas = {name: now[name] - before.get(name, WorkRecord()) for name in now}
        return {name: record for name, record in deltas.items() if record.nonzero()}


def add_work(total: dict[str, WorkRecord], more: Mapping[str, WorkRecord]) -> None:
    """Add ``more`` into ``total`` source by source."""
    for name, record in more.items():
        total[name] = total.get(name, WorkRecord()) + record
