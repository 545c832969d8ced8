"""Figure 11: the ablation. Mechanisms are added to Strawman one at a time.

Order (the paper lists the steps but not the order they were added in; ours follows its
list): Strawman -> +Flex-NPU -> +Flex-Mem -> +pipeline (= FlexServe without cache) ->
+caching (FlexServe with its 4 GiB cache). The first four steps are cold-start requests on the
Figure 5 grid (:func:`flexserve.bench.ttft.time_point`); a step's reduction is the mean over
the grid of ``1 - TTFT(step) / TTFT(previous step)``. Caching only acts across requests, so
its step is measured as Figure 8 is (:mod:`flexserve.bench.cache_ttft`): one seeded workload,
the same requests served by FlexServe without and with its cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from flexserve.bench import cache_ttft, ttft
from flexserve.bench.paper import fig5_6, fig8, published_extra, style
from flexserve.bench.paper.figure import Comparison, Figure, fmt, mean
from flexserve.soc.constants import GIB
from flexserve.systems.config import FLEXSERVE, STRAWMAN, MemoryKind, NpuHandover, SystemConfig
from flexserve.timing.compute import ComputeUnit
from flexserve.timing.profile import DeviceProfile

NAME = "fig11"
CACHE_PAIR = ("qwen3-1.7b", "llama3.1-8b")
CACHE_PROMPT_SET = "oa"
CACHE_BYTES = 4 * GIB
SEED = 0
QUICK_REQUESTS = 8
FULL_REQUESTS = cache_ttft.DEFAULT_REQUESTS
COLUMNS = ("step", "config", "model", "prompt_tokens", "ttft_s")
CACHE_ROW = "workload-mean"


def cold_steps() -> tuple[SystemConfig, ...]:
    """Strawman, then each mechanism added on top of the previous step."""
    npu = STRAWMAN.with_options(name="flex-npu", label="+Flex-NPU", compute=ComputeUnit.NPU,
                                npu_handover=NpuHandover.FLEX_NPU)
    mem = npu.with_options(name="flex-mem", label="+Flex-Mem", memory=MemoryKind.FLEXMEM)
    pipe = FLEXSERVE.with_options(name="pipeline", label="+pipeline (no cache)", cache=False)
    assert pipe == mem.with_options(name="pipeline", label="+pipeline (no cache)",
                                    pipeline=True)
    return STRAWMAN, npu, mem, pipe


def _cold_rows(profile: DeviceProfile, quick: bool) -> list[tuple[str, ...]]:
    models, lengths = fig5_6.grid(quick)
    steps = cold_steps()
    pts = ttft.ttft_sweep(profile, models, lengths, steps)
    return [(str(i), s.name, p.model, str(p.prompt_tokens), fmt(p.ttft_s(s.name)))
            for i, s in enumerate(steps) for p in pts]


def cache_workload(quick: bool, lengths: Sequence[int]) -> cache_ttft.Workload:
    n = QUICK_REQUESTS if quick else FULL_REQUESTS
    return cache_ttft.make_workload(CACHE_PAIR, CACHE_PROMPT_SET, lengths, n, SEED)


def _cache_rows(profile: DeviceProfile, quick: bool,
                lengths: Sequence[int]) -> list[tuple[str, ...]]:
    plain = cold_steps()[-1]
    result = cache_ttft.run_workload(cache_workload(quick, lengths), profile, CACHE_BYTES,
                                     (plain, FLEXSERVE))
    return [("3", "pipeline", CACHE_ROW, "0", fmt(result.mean_ttft_s(plain.name))),
            ("4", "flexserve", CACHE_ROW, "0", fmt(result.mean_ttft_s(FLEXSERVE.name)))]


def reductions_pct(fig: Figure) -> dict[str, float]:
    """Mean TTFT reduction (%) of each step over the step before it."""
    ttft_by: dict[tuple[str, str, str], float] = {}
    names: dict[str, str] = {}
    for step, config, model, n, value in fig.rows:
        ttft_by[(step, model, n)] = float(value)
        names[step] = config
    out: dict[str, float] = {}
    for step in sorted(names, key=int)[1:]:
        prev = str(int(step) - 1)
        keys = [(m, n) for (s, m, n) in ttft_by if s == step and (prev, m, n) in ttft_by]
        out[names[step]] = 100 * mean([1 - ttft_by[(step, m, n)] / ttft_by[(prev, m, n)]
                                       for m, n in keys])
    return out


NOTES = (
    "Order of steps: Strawman -> +Flex-NPU (compute on the NPU, handed over by a Flex-NPU "
    "mode switch) -> +Flex-Mem (page-granular rsmem_alloc instead of CMA + TZASC) -> "
    "+pipeline (per-layer overlap: FlexServe without cache) -> +caching. The paper lists "
    "these mechanisms but not the order it added them in; each step's reduction depends on "
    "the order (Flex-Mem saves less once the pipeline hides allocation).",
    "Gaps: Flex-Mem's saving is proportional to model size (CMA migration of every page), "
    "while the 2.34 s framework init of each cold request is not, so the small models pull "
    "our mean below the paper's; moving compute to the NPU removes the CPU prefill, the "
    "largest part of Strawman's TTFT, hence our larger Flex-NPU step.",
    "Steps 1-3 are cold-start requests on the Figure 5 grid; a reduction is the mean over the "
    "grid of 1 - TTFT(step)/TTFT(previous).",
    f"Caching is measured on one Figure 8 workload ({'+'.join(CACHE_PAIR)}, "
    f"{CACHE_PROMPT_SET} prompts, 4 GiB cache, seed {SEED}): mean TTFT of the requests after "
    "each model's first, FlexServe without vs with its cache (rows 'workload-mean').",
)


def comparisons(fig: Figure) -> tuple[Comparison, ...]:
    got = reductions_pct(fig)
    targets = (("flex-npu", "Flex-NPU", published_extra.ABLATION_FLEX_NPU_REDUCTION_PCT),
               ("flex-mem", "Flex-Mem", published_extra.ABLATION_FLEX_MEM_REDUCTION_PCT),
               ("flexserve", "caching", published_extra.ABLATION_CACHING_REDUCTION_PCT))
    return tuple(Comparison(f"mean TTFT reduction by {label}", got[key], target.value, "%",
                            f"step order as in the notes; source: {target.source}")
                 for key, label, target in targets)


def run(profile: DeviceProfile, quick: bool, lengths: Sequence[int] | None = None) -> Figure:
    """``lengths``: prompt lengths of the caching workload (default: the OA prompt set)."""
    if lengths is None:
        lengths = fig8.prompt_lengths_for(CACHE_PROMPT_SET, quick)
    rows = (*_cold_rows(profile, quick), *_cache_rows(profile, quick, lengths))
    draft = Figure(NAME, "Ablation: mechanisms added to Strawman one at a time", COLUMNS,
                   rows, plot, (), NOTES)
    return Figure(NAME, draft.title, COLUMNS, rows, plot, comparisons(draft), NOTES)


def plot(fig: Figure, path: Path) -> None:
    plt = style.pyplot()
    canvas, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    cold = [r for r in fig.rows if r[2] != CACHE_ROW]
    labels = list(dict.fromkeys(r[1] for r in cold))
    means = [mean([float(r[4]) for r in cold if r[1] == name]) for name in labels]
    left.bar(labels, means, color=style.OURS_COLOUR, edgecolor="black", linewidth=0.3)
    style.log_y(left)
    left.set_ylabel("mean cold-start TTFT (s, log)")
    left.set_title("cold start, Figure 5 grid")
    left.tick_params(axis="x", rotation=15)
    got = reductions_pct(fig)
    paper = {"flex-npu": published_extra.ABLATION_FLEX_NPU_REDUCTION_PCT.value,
             "flex-mem": published_extra.ABLATION_FLEX_MEM_REDUCTION_PCT.value,
             "flexserve": published_extra.ABLATION_CACHING_REDUCTION_PCT.value}
    steps = list(got)
    xs = range(len(steps))
    right.bar([x - 0.2 for x in xs], [got[s] for s in steps], 0.4, label="ours",
              color=style.OURS_COLOUR, edgecolor="black", linewidth=0.3)
    right.bar([x + 0.2 for x in xs], [paper.get(s, 0.0) for s in steps], 0.4,
              label="paper (none reported for the pipeline)", color=style.PAPER_COLOUR,
              edgecolor="black", linewidth=0.3)
    right.set_xticks(list(xs), ["+Flex-NPU", "+Flex-Mem", "+pipeline", "+caching"][:len(steps)])
    right.set_ylabel("mean TTFT reduction over previous step (%)")
    right.set_title("reduction per step")
    right.legend(fontsize="small")
    canvas.suptitle(fig.title)
    style.save(canvas, path)
