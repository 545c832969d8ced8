"""Figure 7: cold-start TTFT while background apps hold N GiB (timing-only, real mechanisms).

For every level, model and system a fresh 16 GiB board boots with a background of kernel
memory, page cache and ``--vm-keep`` apps holding the level (:mod:`background`). The system's
memory for the model is then allocated on it by the real normal-world mechanisms
(:mod:`nw_alloc`): page-cache drops, swap-out, the low-memory killer, CMA migration, the
monitor's FLEXMEM_PROTECT. Each allocation call's recorded work is priced with the profile and
replaces that call's duration in the request's task graph (:func:`~flexserve.systems.schedule.
build_tasks`), whose makespan on the device clock is the TTFT. No slowdown factor is assumed:
what pressure costs is what the mechanisms did.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from flexserve.bench.paper import style
from flexserve.bench.paper.background import BackgroundSpec, build
from flexserve.bench.paper.figure import Figure, fmt
from flexserve.bench.paper.nw_alloc import AllocRun, allocate, chunk_times, run_s
from flexserve.catalog.shapes import PAPER_MODELS
from flexserve.errors import ConfigError, OutOfMemoryError
from flexserve.nwos.events import EventKind
from flexserve.soc.constants import GIB
from flexserve.systems.config import (
    FLEXSERVE,
    NW_BASE,
    STRAWMAN,
    STRAWMAN_OPT,
    MemoryKind,
    SystemConfig,
)
from flexserve.systems.schedule import build_tasks
from flexserve.systems.shape_plan import shape_trace
from flexserve.tee.framework.trace import RequestTrace, StageKind
from flexserve.timing.profile import DeviceProfile
from flexserve.timing.sim import FLASH, DeviceSim, Task, run_dag

NAME = "fig7"
#: FlexServe without its cache, as in the paper's Figure 7 ("without cache").
SYSTEMS = (NW_BASE, STRAWMAN, STRAWMAN_OPT, FLEXSERVE.with_options(cache=False))
MODELS = ("qwen3-1.7b", "llama3.2-3b", "llama3.1-8b")
LEVELS_GIB = (0, 2, 4, 6, 8, 10, 12)
QUICK_MODELS = ("llama3.1-8b",)
QUICK_LEVELS_GIB = (0, 10)
PROMPT_TOKENS = 128
COLUMNS = ("model", "system", "background_gib", "status", "ttft_s", "alloc_s", "dropped_mib",
           "swapped_mib", "migrated_mib", "killed_apps")
NOTES = (
    "Background: 512 MiB of kernel memory, 2 GiB of clean page cache and four --vm-keep apps "
    "sharing the level, 2 GiB swap, on a 16 GiB board (our choice: the paper does not describe "
    "its background apps or levels). Reclaim order: page cache, swap, then the low-memory "
    "killer (nwos defaults).",
    "Every request is a cold start (no cache, framework init included), 128-token prompt. "
    "Allocation costs are the mechanisms' recorded work priced with the profile; the per-page "
    "reclaim cost and swap write latency are estimates (bench/paper/nw_gaps.py).",
    "CMA pays for every movable page it finds in its window, and the window fills with the "
    "background (placement keeps CMA about as full as the rest), so the strawmen slow down "
    "with the level; Flex-Mem and NW-Base take free pages anywhere and pay only for reclaim.",
    "A swap-out's writes hold the flash channel after the allocation call that caused them, "
    "so weight loads queue behind them; the swap is on flash as nwos models it (a phone's "
    "zram would spend CPU instead). 'alloc_s' is the allocation work as if nothing overlapped.",
    "The paper's Figure 7 values are not in the surviving text, so nothing is set beside ours.",
)


def chunk_pages(trace: RequestTrace, system: SystemConfig) -> list[int]:
    """The allocation calls the system's task graph makes: one per layer, or one for all."""
    pages = [layer.stage(StageKind.ALLOC).pages for layer in trace.layers  # type: ignore[union-attr]
             if not layer.resident]
    per_layer = system.memory is MemoryKind.FLEXMEM or (system.pipeline
                                                        and not system.alloc_upfront)
    return pages if per_layer else [sum(pages)]


def with_measured_allocs(tasks: list[Task], times: list[tuple[float, float]]) -> list[Task]:
    """``tasks`` with each allocation call's measured (core, flash) seconds: the alloc task
    takes the core part; a swap-out's flash part becomes a task on the flash channel right
    after it (weight loads queue behind it), and whatever waited for the alloc waits for it."""
    allocs = [t for t in tasks if t.category == "alloc"]
    if len(allocs) != len(times):
        raise ConfigError(f"{len(allocs)} alloc tasks for {len(times)} allocation calls")
    rename: dict[str, str] = {}
    extra: dict[str, Task] = {}
    durations: dict[str, float] = {}
    for task, (core_s, flash_s) in zip(allocs, times, strict=True):
        durations[task.name] = core_s
        if flash_s > 0:
            swap = f"swap-out:{task.name}"
            rename[task.name] = swap
            extra[task.name] = Task(swap, FLASH, flash_s, (task.name,), task.priority,
                                    category="alloc", attrs={"category": "alloc"})
    out: list[Task] = []
    for task in tasks:
        deps = tuple(rename.get(d, d) for d in task.deps)
        duration = durations.get(task.name, task.duration_s)
        out.append(replace(task, deps=deps, duration_s=duration))
        if task.name in extra:
            out.append(extra[task.name])
    return out


def measure(model: str, system: SystemConfig, level_gib: int, profile: DeviceProfile,
            dram_bytes: int = 16 * GIB) -> tuple[float, AllocRun]:
    """(TTFT, the allocation run) of one cold request at one background level."""
    trace = shape_trace(PAPER_MODELS[model], PROMPT_TOKENS, 1)
    chunks = chunk_pages(trace, system)
    cma_bytes = sum(chunks) * 4096 if system.memory is MemoryKind.CMA else 0
    world = build(BackgroundSpec(dram_bytes=dram_bytes, app_bytes=level_gib * GIB), cma_bytes)
    run = allocate(world, system.memory, chunks)
    tasks = build_tasks(trace, system, profile)
    times = [chunk_times(c, system.memory, profile) for c in run.chunks]
    result = run_dag(DeviceSim(profile), with_measured_allocs(tasks, times))
    return result.makespan_s, run


def _row(model: str, system: SystemConfig, level: int, profile: DeviceProfile) -> tuple:
    try:
        ttft_s, run = measure(model, system, level, profile)
    except OutOfMemoryError:
        return (model, system.name, str(level), "oom", "", "", "", "", "", "")
    alloc_s = run_s(run, profile)
    return (model, system.name, str(level), "ok", fmt(ttft_s, 4), fmt(alloc_s, 4),
            fmt(run.event_mib(EventKind.DROP_CACHE), 1), fmt(run.event_mib(EventKind.SWAP_OUT), 1),
            fmt(run.event_mib(EventKind.MIGRATE), 1), str(run.killed))


def run(profile: DeviceProfile, quick: bool) -> Figure:
    models = QUICK_MODELS if quick else MODELS
    levels = QUICK_LEVELS_GIB if quick else LEVELS_GIB
    rows = tuple(_row(m, s, level, profile) for m in models for s in SYSTEMS for level in levels)
    return Figure(NAME, "TTFT under background memory pressure, no cache (Figure 7)",
                  COLUMNS, rows, plot, (), (*NOTES, growth_note(rows, models[-1], levels)))


def growth_note(rows: tuple[tuple, ...], model: str, levels: tuple[int, ...]) -> str:
    """How much each system's TTFT grows from the lowest to the highest level (one model)."""
    ttft = {(r[1], int(r[2])): float(r[4]) for r in rows if r[0] == model and r[3] == "ok"}
    parts = [f"{s.label} {ttft[(s.name, levels[-1])] / ttft[(s.name, levels[0])] - 1:+.0%}"
             for s in SYSTEMS if (s.name, levels[0]) in ttft and (s.name, levels[-1]) in ttft]
    return (f"TTFT growth of {model} from {levels[0]} to {levels[-1]} GiB of background: "
            f"{', '.join(parts)}.")


def plot(fig: Figure, path: Path) -> None:
    plt = style.pyplot()
    models = list(dict.fromkeys(fig.column("model")))
    canvas, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for system in SYSTEMS:
            rows = [r for r in fig.rows if r[0] == model and r[1] == system.name and r[3] == "ok"]
            ax.plot([int(r[2]) for r in rows], [float(r[4]) for r in rows], marker="o",
                    color=style.SYSTEM_COLOURS[system.name], label=system.label)
        ax.set_title(model)
        ax.set_xlabel("background apps hold (GiB)")
        ax.set_ylabel("TTFT (s, log)")
        style.log_y(ax)
    axes[0][0].legend(fontsize="small")
    canvas.suptitle(fig.title)
    style.save(canvas, path)
