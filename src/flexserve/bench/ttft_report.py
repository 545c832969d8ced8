"""Text tables for the TTFT sweep and the TTFT breakdown, beside the published figures."""

from __future__ import annotations

from collections.abc import Sequence

from flexserve.bench import published
from flexserve.bench.ttft import TtftPoint, average_speedup
from flexserve.systems.config import FLEXSERVE, STRAWMAN, STRAWMAN_OPT, SYSTEMS
from flexserve.ui.table import format_table

BREAKDOWN_CATEGORIES = ("alloc", "io", "decrypt", "init", "compute", "other", "idle")


def sweep_table(points: Sequence[TtftPoint]) -> str:
    """Modeled TTFT per model, prompt length and system, FlexServe's speedups and efficiency."""
    header = ["model", "prompt", *[f"{s.label} s" for s in SYSTEMS.values()],
              "vs Strawman", "vs Strawman-OPT", "FlexServe efficiency"]
    rows = []
    for p in points:
        flex = p.timings[FLEXSERVE.name]
        rows.append([p.model, str(p.prompt_tokens),
                     *[f"{p.ttft_s(name):.3f}" for name in SYSTEMS],
                     f"{p.speedup(FLEXSERVE.name, STRAWMAN.name):.2f}x",
                     f"{p.speedup(FLEXSERVE.name, STRAWMAN_OPT.name):.2f}x",
                     f"{p.efficiency(FLEXSERVE.name):.0%} ({flex.bound_resource}-bound)"])
    return format_table(header, rows)


def headline_table(points: Sequence[TtftPoint]) -> str:
    """Average FlexServe TTFT speedups over the points, beside the paper's averages."""
    header = ["FlexServe TTFT speedup over", "ours: mean", "ours: geomean", "paper", "ours/paper"]
    rows = []
    for baseline, paper in ((STRAWMAN, published.TTFT_SPEEDUP_VS_STRAWMAN),
                            (STRAWMAN_OPT, published.TTFT_SPEEDUP_VS_STRAWMAN_OPT)):
        arith, geo = average_speedup(points, baseline.name)
        rows.append([baseline.label, f"{arith:.2f}x", f"{geo:.2f}x", f"{paper.value:.2f}x",
                     f"{arith / paper.value:.2f}"])
    return format_table(header, rows) + f"\npaper: {published.FLEXSERVE_ABSTRACT}"


def per_model_table(points: Sequence[TtftPoint]) -> str:
    """Mean speedups per model: where the averages come from."""
    header = ["model", "vs Strawman (mean)", "vs Strawman-OPT (mean)"]
    rows = []
    for model in dict.fromkeys(p.model for p in points):
        mine = [p for p in points if p.model == model]
        rows.append([model, f"{average_speedup(mine, STRAWMAN.name)[0]:.2f}x",
                     f"{average_speedup(mine, STRAWMAN_OPT.name)[0]:.2f}x"])
    return format_table(header, rows)


def breakdown_table(point: TtftPoint, systems: Sequence[str]) -> str:
    """Seconds of TTFT per category (what was not hidden under a higher category)."""
    header = ["system", "TTFT s", *[f"{c} s" for c in BREAKDOWN_CATEGORIES]]
    rows = []
    for name in systems:
        t = point.timings[name]
        rows.append([t.label, f"{t.ttft_s:.3f}",
                     *[f"{t.breakdown.get(c, 0.0):.3f}" for c in BREAKDOWN_CATEGORIES]])
    return format_table(header, rows)


def tzllm_table(strawman: TtftPoint) -> str:
    """Our Strawman's serial stages beside TZ-LLM's measured strawman components."""
    t = strawman.timings[STRAWMAN.name]
    header = ["stage", "ours s", "TZ-LLM s", "ours/TZ-LLM"]
    rows = []
    for category, figure in published.TZLLM_STRAWMAN_BREAKDOWN_S.items():
        ours = t.breakdown.get(category, 0.0)
        rows.append([category, f"{ours:.3f}", f"{figure.value:.3f}",
                     f"{ours / figure.value:.2f}"])
    total = sum(f.value for f in published.TZLLM_STRAWMAN_BREAKDOWN_S.values())
    rows.append(["TTFT", f"{t.ttft_s:.3f}", f"{total:.3f}", f"{t.ttft_s / total:.2f}"])
    return (format_table(header, rows)
            + f"\nTZ-LLM: {published.TZLLM_FIG1} (Llama-3-8B; ours: {strawman.model})")


def cache_table(results) -> str:
    """Figure 8: mean TTFT (after each model's first request) per pair, prompt set, system."""
    from flexserve.bench.prompt_lengths import LABELS

    header = ["pair", "prompt set", "Strawman s", "Strawman-OPT s", "FlexServe s",
              "vs Strawman", "vs Strawman-OPT"]
    rows = []
    for r in results:
        rows.append(["+".join(r.workload.pair), LABELS[r.workload.prompt_set],
                     *[f"{r.mean_ttft_s(s):.3f}" for s in ("strawman", "strawman-opt",
                                                            "flexserve")],
                     f"{r.speedup('strawman'):.2f}x", f"{r.speedup('strawman-opt'):.2f}x"])
    from statistics import mean

    rows.append(["mean", "", "", "", "", f"{mean(r.speedup('strawman') for r in results):.2f}x",
                 f"{mean(r.speedup('strawman-opt') for r in results):.2f}x"])
    return format_table(header, rows)
