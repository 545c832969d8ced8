"""The device clock: SimPy resources that processes hold for priced durations.

:class:`DeviceSim` wraps a :class:`simpy.Environment` with named
:class:`simpy.PriorityResource` s: ``flash`` (one channel), ``cpu`` (``cpu.big_cores`` units;
crypto and monitor work run here too) and ``npu`` (one, the three NPU cores work as one device).
A process holds one unit for a duration it was given (the cost functions compute it: policy
and prices stay outside); every hold becomes an :class:`Event` in ``sim.log``. Waiting
requests are served by ``priority`` (lower first), then in request order; holds are not
preempted.

DRAM bandwidth is a shared pool of ``dram.bandwidth_bytes_per_s`` (integer bytes/s). A hold
that declares ``dram_bytes`` wants ``dram_bytes / duration_s``; it is granted what is free
when it starts (first come, first served), waits if nothing is free, keeps its grant until it
ends, and is stretched to ``dram_bytes / granted`` when it got less than it wanted. Grants are
not renegotiated when others finish (documented in docs/timing-model.md).

:func:`run_dag` runs a graph of :class:`Task` s (resource + duration + dependencies + priority)
and returns the makespan and the log; a task may be split into ``shards`` that take one unit
each (a decrypt over 4 cores is 4 shards).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import simpy

from flexserve.errors import ConfigError
from flexserve.timing.profile import DeviceProfile

FLASH = "flash"
CPU = "cpu"
NPU = "npu"

Attrs = Mapping[str, Any]
Process = Generator[simpy.Event, Any, Any]


@dataclass(frozen=True)
class Event:
    """One activity: ``unit`` of ``resource`` held from ``start_s`` to ``end_s``."""

    resource: str
    unit: int
    label: str
    start_s: float
    end_s: float
    attrs: Attrs = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class DeviceSim:
    """Named priority resources on one simulated clock, with an event log."""

    def __init__(self, profile: DeviceProfile, *, dram_contention: bool = True,
                 extra_resources: Mapping[str, int] | None = None) -> None:
        self.profile = profile
        self.env = simpy.Environment()
        caps = {FLASH: 1, CPU: profile.cpu.big_cores, NPU: 1, **(extra_resources or {})}
        if any(c < 1 for c in caps.values()):
            raise ConfigError("resource capacities must be >= 1")
        self.capacities: Mapping[str, int] = MappingProxyType(caps)
        self._resources = {n: simpy.PriorityResource(self.env, c) for n, c in caps.items()}
        self._free_units = {n: list(range(c)) for n, c in caps.items()}
        self.dram_contention = dram_contention
        self.dram_bandwidth_bytes_per_s = int(profile.dram.bandwidth_bytes_per_s)
        bw = self.dram_bandwidth_bytes_per_s
        self._dram = simpy.Container(self.env, capacity=bw, init=bw)
        self.log: list[Event] = []

    @property
    def now_s(self) -> float:
        return float(self.env.now)

    def process(self, generator: Process) -> simpy.Process:
        return self.env.process(generator)

    def run(self, until: float | simpy.Event | None = None) -> None:
        self.env.run(until=until)

    def hold(self, resource: str, duration_s: float, label: str, *, priority: int = 0,
             dram_bytes: int = 0, attrs: Attrs | None = None) -> Process:
        """Process body: wait for one unit of ``resource``, hold it, log it.

        Use as ``yield from sim.hold(...)`` inside a process or ``sim.process(sim.hold(...))``.
        Returns the :class:`Event`.
        """
        if resource not in self._resources:
            raise ConfigError(f"unknown resource {resource!r} (have {sorted(self._resources)})")
        if not duration_s >= 0 or dram_bytes < 0:
            raise ConfigError("duration_s and dram_bytes must be >= 0")
        info = dict(attrs or {})
        with self._resources[resource].request(priority=priority) as request:
            yield request
            unit = heapq.heappop(self._free_units[resource])
            start = self.now_s
            grant = yield from self._dram_grant(duration_s, dram_bytes, info)
            held_s = duration_s if grant is None or grant[1] else dram_bytes / grant[0]
            yield self.env.timeout(held_s)
            if grant is not None:
                self._dram.put(grant[0])  # never blocks: the amount was taken from the pool
            heapq.heappush(self._free_units[resource], unit)
        event = Event(resource, unit, label, start, self.now_s, MappingProxyType(info))
        self.log.append(event)
        return event

    def _dram_grant(self, duration_s: float, dram_bytes: int,
                    info: dict[str, Any]) -> Generator[simpy.Event, Any, tuple[int, bool] | None]:
        """Reserve DRAM bandwidth: ``(granted bytes/s, got all it wanted)`` or None."""
        if not self.dram_contention or dram_bytes == 0 or duration_s == 0:
            return None
        wanted = math.ceil(dram_bytes / duration_s)
        capped = min(wanted, int(self._dram.capacity))
        level = int(self._dram.level)
        amount = min(capped, level) if level > 0 else capped  # nothing free: wait for it
        yield self._dram.get(amount)
        full = amount >= wanted
        if not full:
            info["dram_granted_bytes_per_s"] = amount
            info["dram_stretch"] = (dram_bytes / amount) / duration_s
        return amount, full


@dataclass(frozen=True)
class Task:
    """A node of a DAG: hold ``resource`` for ``duration_s`` once all ``deps`` are done.

    ``priority``: lower is served first among waiting requests (TZ-LLM's policy gives restore
    work the index of the layer it feeds, so the earliest pending compute wins).
    ``duration_s`` is the work of one unit; ``shards = k`` splits it into ``k`` equal parts that
    each hold one unit for ``duration_s / k`` (in parallel if units are free), so a 4-core
    decryption is ``Task(..., costs.decrypt_s(bytes, profile), shards=4)``; ``dram_bytes`` is
    split the same way. ``category`` (alloc, io, decrypt, init,
    compute, ...) is copied into every event's attrs for reports.
    """

    name: str
    resource: str
    duration_s: float
    deps: tuple[str, ...] = ()
    priority: int = 0
    shards: int = 1
    dram_bytes: int = 0
    category: str = ""
    attrs: Attrs = field(default_factory=dict)


@dataclass(frozen=True)
class DagResult:
    makespan_s: float
    log: tuple[Event, ...]
    start_s: Mapping[str, float]
    end_s: Mapping[str, float]


def run_dag(sim: DeviceSim, tasks: Sequence[Task]) -> DagResult:
    """Run ``tasks`` on ``sim`` from its current time until all are done.

    Tasks are started in the given order (ties in time and priority keep it). The makespan
    and the per-task times are relative to the time the DAG started; the log holds this DAG's
    events in completion order.
    """
    _validate(sim, tasks)
    t0, first_event = sim.now_s, len(sim.log)
    done = {t.name: sim.env.event() for t in tasks}
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    for task in tasks:
        sim.process(_run_task(sim, task, done, start, end))
    sim.run(until=simpy.AllOf(sim.env, list(done.values())))
    rel_start = {n: start[n] - t0 for n in done}
    rel_end = {n: end[n] - t0 for n in done}
    makespan = max(rel_end.values(), default=0.0)
    return DagResult(makespan, tuple(sim.log[first_event:]), MappingProxyType(rel_start),
                     MappingProxyType(rel_end))


def _run_task(sim: DeviceSim, task: Task, done: Mapping[str, simpy.Event],
              start: dict[str, float], end: dict[str, float]) -> Process:
    if task.deps:
        yield simpy.AllOf(sim.env, [done[d] for d in task.deps])
    parts = []
    for i in range(task.shards):
        attrs = {"task": task.name, **task.attrs}
        if task.category:
            attrs["category"] = task.category
        if task.shards > 1:
            attrs["shard"] = i
        body = sim.hold(task.resource, task.duration_s / task.shards, task.name,
                        priority=task.priority, dram_bytes=_share(task.dram_bytes, task.shards, i),
                        attrs=attrs)
        parts.append(sim.process(body))
    results = yield simpy.AllOf(sim.env, parts)
    events = [results[p] for p in parts]
    start[task.name] = min(e.start_s for e in events)
    end[task.name] = max(e.end_s for e in events)
    done[task.name].succeed()


def _share(total: int, parts: int, index: int) -> int:
    """Split ``total`` into ``parts`` integers that sum to it (earlier parts get the rest)."""
    base, rest = divmod(total, parts)
    return base + (1 if index < rest else 0)


def _validate(sim: DeviceSim, tasks: Sequence[Task]) -> None:
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError("task names must be unique")
    known = set(names)
    for t in tasks:
        if t.resource not in sim.capacities:
            raise ConfigError(f"task {t.name!r}: unknown resource {t.resource!r}")
        if not t.duration_s >= 0 or t.shards < 1 or t.dram_bytes < 0:
            raise ConfigError(f"task {t.name!r}: needs duration_s >= 0, shards >= 1, "
                              "dram_bytes >= 0")
        missing = [d for d in t.deps if d not in known]
        if missing:
            raise ConfigError(f"task {t.name!r} depends on unknown task(s) {missing}")
    _check_acyclic(tasks)


def _check_acyclic(tasks: Sequence[Task]) -> None:
    """Kahn's algorithm: every task must become ready once its dependencies are done."""
    waiting = {t.name: len(set(t.deps)) for t in tasks}
    users: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for d in set(t.deps):
            users[d].append(t.name)
    ready = [n for n, count in waiting.items() if count == 0]
    while ready:
        for user in users[ready.pop()]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    stuck = sorted(n for n, count in waiting.items() if count > 0)
    if stuck:
        raise ConfigError(f"task graph has a cycle through {stuck}")
