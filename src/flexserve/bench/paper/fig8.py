"""Figure 8: TTFT with a 4 GiB cache, the paper's model pairs on the four prompt sets.

Wraps :func:`flexserve.bench.cache_ttft.cache_sweep`. Prompt lengths come from
:func:`flexserve.bench.prompt_lengths.prompt_set` (proxy tokenizer; ShareGPT stands in for
UltraChat and is labelled so).
"""

from __future__ import annotations

from pathlib import Path

from flexserve.bench import cache_ttft, prompt_lengths, published
from flexserve.bench.paper import style
from flexserve.bench.paper.figure import Comparison, Figure, fmt, mean
from flexserve.systems.config import SYSTEMS
from flexserve.timing.profile import DeviceProfile

NAME = "fig8"
SEED = 0
QUICK_PAIRS = cache_ttft.MODEL_PAIRS[:1]
QUICK_SETS = ("oa",)
QUICK_REQUESTS = 8
COLUMNS = ("pair", "prompt_set", "system", "requests", "mean_ttft_s", "speedup_of_flexserve")


def prompt_lengths_for(name: str, quick: bool) -> tuple[int, ...]:
    """The first prompts' token lengths: as many as one workload uses."""
    n = QUICK_REQUESTS if quick else cache_ttft.DEFAULT_REQUESTS
    return prompt_lengths.prompt_set(name, limit=n).lengths


def results(profile: DeviceProfile, quick: bool) -> list[cache_ttft.WorkloadResult]:
    sets = QUICK_SETS if quick else cache_ttft.PROMPT_SETS
    lengths = {name: prompt_lengths_for(name, quick) for name in sets}
    return cache_ttft.cache_sweep(
        profile, lengths, pairs=QUICK_PAIRS if quick else cache_ttft.MODEL_PAIRS,
        n_requests=QUICK_REQUESTS if quick else cache_ttft.DEFAULT_REQUESTS, seed=SEED)


def _rows(res: list[cache_ttft.WorkloadResult]) -> tuple[tuple[str, ...], ...]:
    return tuple(("+".join(r.workload.pair), r.workload.prompt_set, system,
                  str(len(r.workload.requests)), fmt(r.mean_ttft_s(system)),
                  fmt(r.speedup(system), 4))
                 for r in res for system in r.ttft_s)


def comparisons(res: list[cache_ttft.WorkloadResult]) -> tuple[Comparison, ...]:
    out = []
    for over, target in (("strawman", published.TTFT_SPEEDUP_VS_STRAWMAN),
                         ("strawman-opt", published.TTFT_SPEEDUP_VS_STRAWMAN_OPT)):
        out.append(Comparison(
            f"mean speedup with cache vs {SYSTEMS[over].label}",
            mean([r.speedup(over) for r in res]), target.value, "x",
            f"mean over {len(res)} workloads of the mean-TTFT ratio; the paper's headline "
            f"average does not say which figure it averages, so this is indicative; "
            f"source: {target.source}"))
    return tuple(out)


NOTES = (
    "Each workload: seeded requests (seed 0) to one model of a pair, prompt lengths of the "
    "set in file order, clipped at 2,048 tokens, plus the chat template. Mean TTFT excludes "
    "each model's first request (its framework init is the same for every system).",
    "ShareGPT ('sharegpt') stands in for the paper's UltraChat, which could not be obtained. "
    "Lengths use the SmolLM2 tokenizer as a proxy (a few percent high for Llama 3/Qwen3).",
)


def run(profile: DeviceProfile, quick: bool) -> Figure:
    res = results(profile, quick)
    return Figure(NAME, "TTFT with a 4 GiB cache (Figure 8)", COLUMNS, _rows(res), plot,
                  comparisons(res), NOTES)


def plot(fig: Figure, path: Path) -> None:
    plt = style.pyplot()
    sets = list(dict.fromkeys(fig.column("prompt_set")))
    pairs = list(dict.fromkeys(fig.column("pair")))
    systems = list(dict.fromkeys(fig.column("system")))
    canvas, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets) + 1, 3.8),
                                squeeze=False)
    width = 0.8 / len(systems)
    for col, name in enumerate(sets):
        ax = axes[0][col]
        for k, system in enumerate(systems):
            values = [float(r[4]) for p in pairs for r in fig.rows
                      if r[0] == p and r[1] == name and r[2] == system]
            xs = [i + (k - (len(systems) - 1) / 2) * width for i in range(len(values))]
            ax.bar(xs, values, width, label=SYSTEMS[system].label, edgecolor="black",
                   linewidth=0.3, color=style.SYSTEM_COLOURS.get(system))
        ax.set_xticks(range(len(pairs)), [p.replace("+", "\n+") for p in pairs],
                      fontsize="x-small")
        ax.set_title(prompt_lengths.LABELS[name], fontsize="small")
        style.log_y(ax)
    axes[0][0].set_ylabel("mean TTFT (s, log)")
    axes[0][0].legend(fontsize="small")
    canvas.suptitle(fig.title)
    style.save(canvas, path)
