"""Figure 10 (apps): normal-world app speed while a secure inference runs beside it.

The inference is one cold request (128-token prompt, 64 generated tokens) on FlexServe (NPU,
Flex-Mem, stage-2 on while it runs) or on the Strawman (CPU only, TZASC memory, no stage-2).
Its demand per phase comes from its schedule (:func:`~flexserve.systems.schedule.
time_request`): the big-core seconds of its CPU events and the DRAM bytes of its tasks during
prefill, and the weight and KV stream of every decoded token (:func:`~flexserve.timing.
compute.decode_token_bytes`), on the cores that decode (the whole big cluster on the CPU, none
on the NPU). :mod:`contention` turns demand into the app's share of cores and DRAM.
"""

from __future__ import annotations

from pathlib import Path

from flexserve.bench.paper import style
from flexserve.bench.paper.contention import APPS, App, Load, share
from flexserve.bench.paper.figure import Figure, fmt
from flexserve.catalog.shapes import PAPER_MODELS
from flexserve.systems.config import FLEXSERVE, STRAWMAN, MemoryKind, SystemConfig
from flexserve.systems.schedule import build_tasks, time_request
from flexserve.systems.shape_plan import shape_trace
from flexserve.timing import compute
from flexserve.timing.profile import DeviceProfile
from flexserve.timing.sim import CPU

NAME = "fig10b"
SYSTEMS = (STRAWMAN, FLEXSERVE.with_options(cache=False))
MODELS = ("qwen3-1.7b", "llama3.1-8b")
QUICK_MODELS = ("qwen3-1.7b",)
PROMPT_TOKENS, OUTPUT_TOKENS = 128, 64
PHASES = ("prefill", "decode", "request")
COLUMNS = ("system", "model", "app", "phase", "duration_s", "tee_cores", "inference_dram_gbps",
           "app_cpu_share", "app_dram_share", "app_speed", "app_lost_s", "inference_dram_share")
NOTES = (
    "App speed is relative to the app alone with stage-2 off (1.0); FlexServe's rows include "
    "the profile's stage-2 overhead (2.0 %, TZ-LLM's Geekbench figure) because on-demand "
    "protection turns stage-2 on while a secure request runs; the Strawman uses TZASC memory "
    "and has no stage-2 cost. 'request' is the time-weighted mean over prefill and decode; "
    "'app_lost_s' is the app time the request costs (1 - speed, times the phase's length), "
    "which also counts how long the request runs.",
    "The apps are estimates (bench/paper/contention.py: one-thread SQLite-like transactions, "
    "a one-core streaming loop, a four-thread compute job); the sharing rules (fair cores, "
    "DRAM shared in proportion to demand) are our model, not a measurement. The inference's "
    "side comes from its schedule and the profile (cpu.big_cores, dram.bandwidth_bytes_per_s).",
    "FlexServe keeps the big cores almost free (the NPU computes and decodes) but its decode "
    "streams the weights at about 15 GB/s, which a memory-bound app feels; the Strawman holds "
    "all four big cores for its whole CPU prefill and decode.",
    "The paper reports only the stage-2 overhead (2.46 % on SQLite, see fig10); its "
    "contention values are not in the surviving text, so nothing is set beside these rows.",
)


def loads(system: SystemConfig, model: str, profile: DeviceProfile) -> tuple[Load, Load]:
    """The inference's (prefill, decode) demand for one cold request."""
    shape = PAPER_MODELS[model]
    trace = shape_trace(shape, PROMPT_TOKENS, OUTPUT_TOKENS)
    timing = time_request(trace, system, profile)
    core_s = sum(e.duration_s for e in timing.log if e.resource == CPU)
    dram = sum(t.dram_bytes for t in build_tasks(trace, system, profile))
    prefill = Load.of("prefill", timing.ttft_s, core_s, dram)
    decode_s = OUTPUT_TOKENS / timing.decode_tokens_per_s
    decode_bytes = sum(compute.decode_token_bytes(shape, PROMPT_TOKENS + k)
                       for k in range(OUTPUT_TOKENS))
    cores = profile.cpu.big_cores if system.compute is compute.ComputeUnit.CPU else 0
    return prefill, Load.of("decode", decode_s, cores * decode_s, decode_bytes)


def _stage2(system: SystemConfig, profile: DeviceProfile) -> float:
    """Stage-2 overhead while a request of ``system`` runs (only Flex-Mem systems use it)."""
    if system.memory is MemoryKind.FLEXMEM:
        return profile.stage2.normal_app_overhead_fraction
    return 0.0


def _rows(system: SystemConfig, model: str, app: App, profile: DeviceProfile) -> list[tuple]:
    overhead = _stage2(system, profile)
    out, work, total_s = [], 0.0, 0.0
    for load in loads(system, model, profile):
        s = share(app, load, profile)
        speed = s.with_stage2(overhead)
        work, total_s = work + speed * load.duration_s, total_s + load.duration_s
        out.append((system.name, model, app.name, load.phase, fmt(load.duration_s, 3),
                    fmt(load.busy_cores, 3), fmt(load.dram_bytes_per_s / 1e9, 3), fmt(s.cpu, 4),
                    fmt(s.dram, 4), fmt(speed, 4), fmt((1 - speed) * load.duration_s, 3),
                    fmt(s.inference_dram, 4)))
    out.append((system.name, model, app.name, "request", fmt(total_s, 3), "", "", "", "",
                fmt(work / total_s, 4), fmt(total_s - work, 3), ""))
    return out


def run(profile: DeviceProfile, quick: bool) -> Figure:
    models = QUICK_MODELS if quick else MODELS
    rows = tuple(row for system in SYSTEMS for model in models for app in APPS
                 for row in _rows(system, model, app, profile))
    return Figure(NAME, "Normal-world app speed beside a secure inference (Figure 10, apps)",
                  COLUMNS, rows, plot, (), NOTES)


def plot(fig: Figure, path: Path) -> None:
    plt = style.pyplot()
    models = list(dict.fromkeys(fig.column("model")))
    apps = [a.name for a in APPS]
    canvas, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 3.6), squeeze=False)
    width = 0.38
    for ax, model in zip(axes[0], models, strict=True):
        for k, system in enumerate(SYSTEMS):
            speed = {r[2]: float(r[9]) for r in fig.rows
                     if r[0] == system.name and r[1] == model and r[3] == "request"}
            xs = [i + (k - 0.5) * width for i in range(len(apps))]
            ax.bar(xs, [speed[a] for a in apps], width, color=style.SYSTEM_COLOURS[system.name],
                   label=system.label)
        ax.set_xticks(range(len(apps)), apps)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("app speed during the request (1 = alone)")
        ax.set_title(f"beside a {model} request")
    axes[0][0].legend(fontsize="small")
    canvas.suptitle(fig.title)
    style.save(canvas, path)
