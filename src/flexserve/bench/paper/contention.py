"""What a normal-world app loses to a secure inference running beside it (a sharing model).

The inference's demand comes from its schedule: per phase (prefill = the request's task graph
up to the first token; decode = the generated tokens) the big-core seconds its CPU events
held and the DRAM bytes its tasks declared, over the phase's device time. The app is described
by how many big cores it runs on, the DRAM bandwidth it streams when alone, and the share of
its time that is memory-bound (:class:`App`; estimates, docs/evaluation.md).

Sharing rules (our choice, the simplest that follows the resources the profile has):

- **cores**: ``cpu.big_cores`` are shared fairly between the app's threads and the cores the
  secure side keeps busy (secure-world time is not preemptible by the normal scheduler, so it
  is a load the app's threads share the cluster with);
- **DRAM**: the bus (``dram.bandwidth_bytes_per_s``, the simulator's pool) is shared in
  proportion to demand once the sum exceeds it;
- the app's speed is ``1 / ((1 - m) / s_cpu + m / s_mem)`` for memory-bound share ``m``;
- stage-2 translation, while on, costs the profile's ``stage2.normal_app_overhead_fraction``.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.errors import ConfigError
from flexserve.timing.profile import DeviceProfile


@dataclass(frozen=True)
class App:
    """A normal-world app, as the sharing model sees it."""

    name: str
    threads: int                   # big cores it keeps busy when alone
    dram_bytes_per_s: float        # bandwidth it streams when alone
    memory_bound_fraction: float   # share of its time stalled on DRAM when alone
    source: str

    def __post_init__(self) -> None:
        if self.threads < 1 or self.dram_bytes_per_s < 0:
            raise ConfigError("an app needs >= 1 thread and a bandwidth >= 0")
        if not 0.0 <= self.memory_bound_fraction <= 1.0:
            raise ConfigError("memory_bound_fraction must be in [0, 1]")


@dataclass(frozen=True)
class Load:
    """The secure inference's average demand over one phase."""

    phase: str
    duration_s: float
    busy_cores: float        # big cores the secure side keeps busy, on average
    dram_bytes_per_s: float  # its DRAM traffic, on average

    @classmethod
    def of(cls, phase: str, duration_s: float, core_s: float, dram_bytes: float) -> Load:
        if duration_s <= 0:
            raise ConfigError(f"phase {phase} has no duration")
        return cls(phase, duration_s, core_s / duration_s, dram_bytes / duration_s)


@dataclass(frozen=True)
class Share:
    """The app's speed in one phase, relative to the app alone with stage-2 off."""

    cpu: float        # fraction of its cores' time it gets
    dram: float       # fraction of its bandwidth it gets
    speed: float      # without stage-2
    inference_dram: float  # fraction of its bandwidth the inference gets

    def with_stage2(self, overhead_fraction: float) -> float:
        return self.speed * (1.0 - overhead_fraction)


def cpu_share(app: App, busy_cores: float, cores: int) -> float:
    """Fair sharing of ``cores`` between the app's threads and the secure side's load."""
    demand = app.threads + busy_cores
    if demand <= cores:
        return 1.0
    return cores / demand


def dram_share(wanted: float, other: float, bus: float) -> float:
    """Proportional sharing of ``bus`` bytes/s once demand exceeds it; 1.0 below."""
    if wanted <= 0 or wanted + other <= bus:
        return 1.0
    return bus / (wanted + other)


def share(app: App, load: Load, profile: DeviceProfile) -> Share:
    bus = profile.dram.bandwidth_bytes_per_s
    s_cpu = cpu_share(app, load.busy_cores, profile.cpu.big_cores)
    wanted = app.dram_bytes_per_s * s_cpu  # a slowed app also streams less
    s_mem = dram_share(wanted, load.dram_bytes_per_s, bus)
    m = app.memory_bound_fraction
    speed = 1.0 / ((1.0 - m) / s_cpu + m / (s_cpu * s_mem))
    return Share(s_cpu, s_mem, speed, dram_share(load.dram_bytes_per_s, wanted, bus))


#: The apps (all estimates; their reasoning is in each source string).
APPS = (
    App("sqlite", threads=1, dram_bytes_per_s=1.0e9, memory_bound_fraction=0.2,
        source="estimate: SQLite speedtest1-style transactions run on one thread; B-tree "
               "pages mostly hit the caches, so a fifth of the time and ~1 GB/s go to DRAM"),
    App("stream", threads=1, dram_bytes_per_s=2.0378e10, memory_bound_fraction=0.9,
        source="estimate: a STREAM-like copy loop (video frame processing) on one A76 core "
               "streams what one core can (dram.bandwidth_bytes_per_s, tinymembench) and is "
               "memory-bound most of the time"),
    App("multicore", threads=4, dram_bytes_per_s=2.0e9, memory_bound_fraction=0.1,
        source="estimate: a multi-threaded compute job (compiler, Geekbench multi-core) on "
               "all four big cores, mostly in caches"),
)
