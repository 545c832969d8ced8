"""Figure 1 (b): allocating 8 GiB of secure memory under several background workloads.

Each workload is a fresh 16 GiB board whose normal world holds it (:mod:`background`), or,
for ``fragmented``, the nwos scenario's seeded churn (:mod:`flexserve.nwos.scenario`: cycled
to 85 % and back to 35 %, plus two ``--vm-keep`` apps). Flex-Mem is one ``rsmem_alloc`` through
the real monitor; CMA is one contiguous allocation of a boot-time region of the same size.
The recorded work (pages allocated, dropped, swapped, migrated, S2PT entries) is priced with
the profile, so the latency follows what each mechanism had to do on that background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flexserve.bench.paper import style
from flexserve.bench.paper.background import BackgroundSpec, build
from flexserve.bench.paper.figure import Figure, fmt
from flexserve.bench.paper.nw_alloc import AllocRun, ChunkAlloc, allocate, run_s
from flexserve.nwos import scenario
from flexserve.nwos.events import EventKind
from flexserve.nwos.page import pages_for_bytes
from flexserve.soc.constants import GIB
from flexserve.systems.config import MemoryKind
from flexserve.timing.profile import DeviceProfile

NAME = "fig1b"
MECHANISMS = (MemoryKind.FLEXMEM, MemoryKind.CMA)
LABELS = {MemoryKind.FLEXMEM: "Flex-Mem (rsmem_alloc)", MemoryKind.CMA: "CMA + TZASC"}
COLUMNS = ("workload", "mechanism", "dram_gib", "alloc_gib", "alloc_ms", "migrated_mib",
           "dropped_mib", "swapped_mib", "killed_apps")


@dataclass(frozen=True)
class Workload:
    """A background as fractions of DRAM (kernel, page cache, anonymous app memory)."""

    name: str
    kernel: float
    page_cache: float
    apps: float

    def spec(self, dram_bytes: int) -> BackgroundSpec:
        return BackgroundSpec(dram_bytes=dram_bytes, kernel_bytes=int(self.kernel * dram_bytes),
                              page_cache_bytes=int(self.page_cache * dram_bytes),
                              app_bytes=int(self.apps * dram_bytes),
                              swap_bytes=dram_bytes // 8)


#: Idle, then one kind of memory at a time, then a full phone; fractions of a 16 GiB board.
WORKLOADS = (
    Workload("idle", kernel=1 / 32, page_cache=1 / 32, apps=0.0),
    Workload("page-cache", kernel=1 / 32, page_cache=1 / 2, apps=0.0),
    Workload("anon", kernel=1 / 32, page_cache=1 / 32, apps=1 / 2),
    Workload("full", kernel=1 / 32, page_cache=1 / 8, apps=3 / 4),
)
FRAGMENTED = "fragmented"
DRAM_BYTES, ALLOC_BYTES = 16 * GIB, 8 * GIB
QUICK_DRAM_BYTES, QUICK_ALLOC_BYTES = 2 * GIB, 1 * GIB
NOTES = (
    "Workloads (our choice; the paper's are not in the surviving text): idle (512 MiB kernel, "
    "512 MiB page cache), page-cache (8 GiB of clean file cache), anon (--vm-keep apps holding "
    "8 GiB), full (apps holding 12 GiB plus 2 GiB of cache: reclaim, swap and the low-memory "
    "killer all run), fragmented (the nwos scenario: seeded churn to 85 % and back to 35 %, "
    "two --vm-keep apps).",
    "CMA's cost is the movable pages it must migrate out of its window, so it grows with how "
    "full memory is; on an idle board it is cheaper than Flex-Mem's per-page protection. The "
    "paper's 6,441 ms (profile calibration, panel a) is the fully occupied window.",
    "Reclaim (page-cache drop, swap-out) is priced with estimated per-page and write costs "
    "(bench/paper/nw_gaps.py); both mechanisms pay it for the pages they take.",
    "The paper's panel (b) values are not in the surviving text, so nothing is set beside ours.",
)


def _background(workload: Workload, mechanism: MemoryKind, dram: int, alloc: int) -> AllocRun:
    world = build(workload.spec(dram), alloc if mechanism is MemoryKind.CMA else 0)
    return allocate(world, mechanism, [pages_for_bytes(alloc)])


def _fragmented(mechanism: MemoryKind, dram: int, alloc: int) -> AllocRun:
    config = scenario.ScenarioConfig(dram_bytes=dram, secure_bytes=alloc)
    runner: Callable[[scenario.ScenarioConfig], scenario.AllocOutcome] = (
        scenario.run_cma if mechanism is MemoryKind.CMA else scenario.run_flexmem)
    outcome = runner(config)
    changes = 1 if mechanism is MemoryKind.CMA else 0
    return AllocRun(mechanism, (ChunkAlloc(outcome.pages, outcome.work, changes),),
                    dict(outcome.events))


def _row(name: str, mechanism: MemoryKind, run: AllocRun, dram: int, alloc: int,
         profile: DeviceProfile) -> tuple[str, ...]:
    return (name, mechanism.value, fmt(dram / GIB, 0), fmt(alloc / GIB, 0),
            fmt(1e3 * run_s(run, profile), 3), fmt(run.event_mib(EventKind.MIGRATE), 1),
            fmt(run.event_mib(EventKind.DROP_CACHE), 1),
            fmt(run.event_mib(EventKind.SWAP_OUT), 1), str(run.killed))


def run(profile: DeviceProfile, quick: bool) -> Figure:
    dram, alloc = (QUICK_DRAM_BYTES, QUICK_ALLOC_BYTES) if quick else (DRAM_BYTES, ALLOC_BYTES)
    rows = []
    for mechanism in MECHANISMS:
        for workload in WORKLOADS:
            rows.append(_row(workload.name, mechanism,
                             _background(workload, mechanism, dram, alloc), dram, alloc, profile))
        rows.append(_row(FRAGMENTED, mechanism, _fragmented(mechanism, dram, alloc), dram, alloc,
                         profile))
    return Figure(NAME, "Allocating secure memory under background workloads (Figure 1b)",
                  COLUMNS, tuple(rows), plot, (), (*NOTES, ratio_note(tuple(rows))))


def ratio_note(rows: tuple[tuple[str, ...], ...]) -> str:
    """CMA's latency over Flex-Mem's, per workload."""
    ms = {(r[0], r[1]): float(r[4]) for r in rows}
    workloads = dict.fromkeys(r[0] for r in rows)
    parts = [f"{w} {ms[(w, MemoryKind.CMA.value)] / ms[(w, MemoryKind.FLEXMEM.value)]:.2f}x"
             for w in workloads]
    return f"CMA latency over Flex-Mem's: {', '.join(parts)}."


def plot(fig: Figure, path: Path) -> None:
    plt = style.pyplot()
    canvas, ax = plt.subplots(figsize=(6.0, 3.6))
    workloads = list(dict.fromkeys(fig.column("workload")))
    colours = {MemoryKind.FLEXMEM: style.SYSTEM_COLOURS["flexserve"],
               MemoryKind.CMA: style.SYSTEM_COLOURS["strawman"]}
    width = 0.38
    for k, mechanism in enumerate(MECHANISMS):
        values = {r[0]: float(r[4]) for r in fig.rows if r[1] == mechanism.value}
        xs = [i + (k - 0.5) * width for i in range(len(workloads))]
        ax.bar(xs, [values[w] for w in workloads], width, color=colours[mechanism],
               label=LABELS[mechanism])
    ax.set_xticks(range(len(workloads)), workloads)
    ax.set_xlabel("background workload")
    ax.set_ylabel("allocation latency (ms)")
    ax.legend(fontsize="small")
    ax.set_title(fig.title, fontsize="medium")
    style.save(canvas, path)
