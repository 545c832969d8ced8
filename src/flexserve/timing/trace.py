"""Reports over an event log: Chrome/Perfetto trace JSON, the whole-log record, busy-time
bounds and TTFT breakdowns.

Lanes: one per resource unit (``cpu.0`` .. ``cpu.3``); a resource only ever seen on unit 0 is
one lane named after it (``flash``, ``npu``). Every Chrome ``X`` event of a lane is then
non-overlapping, as the trace format requires of one thread.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flexserve.errors import ConfigError
from flexserve.timing.sim import CPU, FLASH, NPU, Event

LOG_FORMAT = "flexserve-event-log"
LOG_VERSION = 1
US_PER_S = 1_000_000

#: TTFT categories, in the precedence used by :func:`ttft_breakdown` (first active one wins).
CATEGORIES = ("compute", "decrypt", "io", "alloc", "init", "other")
IDLE = "idle"
_PREFIXES = {
    "compute": "compute", "prefill": "compute", "decode": "compute",
    "decrypt": "decrypt", "verify": "decrypt",
    "load": "io", "read": "io", "io": "io", "writeback": "io",
    "alloc": "alloc", "protect": "alloc", "cma": "alloc", "reclaim": "alloc",
    "init": "init", "boot": "init", "metadata": "init", "tokenizer": "init",
}
_RESOURCE_ORDER = (FLASH, CPU, NPU)


# --- lanes ---------------------------------------------------------------------------------

def lanes(log: Iterable[Event]) -> list[str]:
    """Lane names in display order: flash, cpu units, npu, then other resources by name."""
    units: dict[str, set[int]] = {}
    for e in log:
        units.setdefault(e.resource, set()).add(e.unit)
    rank = {r: i for i, r in enumerate(_RESOURCE_ORDER)}
    out: list[str] = []
    for resource in sorted(units, key=lambda r: (rank.get(r, len(rank)), r)):
        seen = units[resource]
        out += [resource] if seen == {0} else [f"{resource}.{u}" for u in sorted(seen)]
    return out


def lane_of(event: Event, lane_names: Sequence[str]) -> str:
    return event.resource if event.resource in lane_names else f"{event.resource}.{event.unit}"


# --- Chrome / Perfetto trace ---------------------------------------------------------------

def chrome_trace(log: Sequence[Event], *, process_name: str = "device") -> dict[str, Any]:
    """The log as a Chrome trace (``traceEvents``; ``ph: "X"``; ts/dur in microseconds)."""
    names = lanes(log)
    tid = {name: i + 1 for i, name in enumerate(names)}
    meta: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": process_name}},
    ]
    for name, i in tid.items():
        meta.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": i, "args": {"name": name}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": i,
                     "args": {"sort_index": i}})
    spans = [{"name": e.label, "cat": category_of(e), "ph": "X", "pid": 1,
              "tid": tid[lane_of(e, names)], "ts": e.start_s * US_PER_S,
              "dur": e.duration_s * US_PER_S, "args": _jsonable(e.attrs)}
             for e in sorted(log, key=lambda e: (e.start_s, names.index(lane_of(e, names))))]
    return {"traceEvents": meta + spans, "displayTimeUnit": "ms"}


def write_chrome_trace(log: Sequence[Event], path: str | Path, **kwargs: Any) -> Path:
    out = Path(path)
    out.write_text(json.dumps(chrome_trace(log, **kwargs), indent=1) + "\n")
    return out


# --- the whole event log -------------------------------------------------------------------

def event_log_to_dict(log: Sequence[Event], meta: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]:
    """Every event, exactly (seconds as floats), plus free-form ``meta`` (profile, config)."""
    return {"format": LOG_FORMAT, "version": LOG_VERSION, "meta": _jsonable(meta or {}),
            "events": [{"resource": e.resource, "unit": e.unit, "label": e.label,
                        "start_s": e.start_s, "end_s": e.end_s, "attrs": _jsonable(e.attrs)}
                       for e in log]}


def event_log_from_dict(data: Mapping[str, Any]) -> list[Event]:
    if data.get("format") != LOG_FORMAT or data.get("version") != LOG_VERSION:
        raise ConfigError(f"not a {LOG_FORMAT} version {LOG_VERSION} record")
    try:
        return [Event(d["resource"], int(d["unit"]), d["label"], float(d["start_s"]),
                      float(d["end_s"]), dict(d.get("attrs", {}))) for d in data["events"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"malformed event log: {exc}") from None


def write_event_log(log: Sequence[Event], path: str | Path,
                    meta: Mapping[str, Any] | None = None) -> Path:
    out = Path(path)
    out.write_text(json.dumps(event_log_to_dict(log, meta), indent=1) + "\n")
    return out


def read_event_log(path: str | Path) -> list[Event]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read event log {str(path)!r}: {exc}") from None
    return event_log_from_dict(data)


def _jsonable(attrs: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, Mapping):
            out[str(key)] = _jsonable(value)
        elif value is None or isinstance(value, bool | int | float | str):
            out[str(key)] = value
        else:
            out[str(key)] = str(value)
    return out


# --- busy time and bounds ------------------------------------------------------------------

def busy_s_by_resource(log: Iterable[Event]) -> dict[str, float]:
    """Sum of held time per resource (unit-seconds), in lane order."""
    busy: dict[str, float] = {}
    for e in log:
        busy[e.resource] = busy.get(e.resource, 0.0) + e.duration_s
    return busy


def busiest_resource_bound(log: Iterable[Event], capacities: Mapping[str, int]
                           ) -> tuple[str, float]:
    """The resource whose busy time / capacity is largest, and that value: no schedule of the
    same work can finish sooner (dependencies ignored)."""
    busy = busy_s_by_resource(log)
    if not busy:
        return "", 0.0
    per_resource = {r: s / _capacity(capacities, r) for r, s in busy.items()}
    name = max(per_resource, key=lambda r: (per_resource[r], r))
    return name, per_resource[name]


def pipeline_efficiency(log: Sequence[Event], capacities: Mapping[str, int],
                        makespan_s: float) -> float:
    """Busiest-resource bound / makespan (1.0 = the bottleneck resource never idled)."""
    if makespan_s <= 0:
        raise ConfigError("makespan_s must be > 0")
    return busiest_resource_bound(log, capacities)[1] / makespan_s


def _capacity(capacities: Mapping[str, int], resource: str) -> int:
    try:
        return capacities[resource]
    except KeyError:
        raise ConfigError(f"no capacity given for resource {resource!r}") from None


# --- categories and the TTFT breakdown -----------------------------------------------------

def category_of(event: Event) -> str:
    """``attrs["category"]`` if set, else from the label's first word (``load:blk.3`` -> io,
    ``decrypt blk.3`` -> decrypt; see ``_PREFIXES``), else ``other``."""
    given = event.attrs.get("category")
    if given:
        return str(given)
    head = event.label.replace(":", " ").replace("/", " ").split(maxsplit=1)
    return _PREFIXES.get(head[0].lower(), "other") if head else "other"


def busy_by_category(log: Iterable[Event]) -> dict[str, float]:
    """Resource-seconds per category (overlapping work is counted on every resource)."""
    out: dict[str, float] = {}
    for e in log:
        c = category_of(e)
        out[c] = out.get(c, 0.0) + e.duration_s
    return out


def ttft_breakdown(log: Sequence[Event], *, start_s: float = 0.0, end_s: float | None = None,
                   precedence: Sequence[str] = CATEGORIES) -> dict[str, float]:
    """Split ``[start_s, end_s]`` (default: to the last event's end) among categories.

    Each instant goes to the first category in ``precedence`` that has an event running then
    (so with a pipeline, time compute hides I/O under is compute's); instants with nothing
    running are ``idle``. The parts sum to ``end_s - start_s``. Categories not in
    ``precedence`` rank after it, by name.
    """
    end = max((e.end_s for e in log), default=start_s) if end_s is None else end_s
    rank = {c: i for i, c in enumerate(precedence)}
    cuts = sorted({start_s, end, *(t for e in log for t in (e.start_s, e.end_s)
                                   if start_s < t < end)})
    out = dict.fromkeys([*precedence, IDLE], 0.0)
    for lo, hi in itertools.pairwise(cuts):
        active = {category_of(e) for e in log if e.start_s <= lo and e.end_s >= hi
                  and e.end_s > e.start_s}
        winner = min(active, key=lambda c: (rank.get(c, len(rank)), c)) if active else IDLE
        out[winner] = out.get(winner, 0.0) + (hi - lo)
    return out
