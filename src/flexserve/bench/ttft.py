"""Cold-start TTFT of the four systems on the paper's models (timing-only mode).

Each point is one request of ``prompt_tokens`` on one shape-only model, run through the same
trace (:func:`~flexserve.systems.shape_plan.shape_trace`) on every system, so the systems
differ only in how they place that work on the device. Results are outputs (DESIGN.md
section 3); :mod:`flexserve.bench.published` holds what the papers report beside them.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flexserve.catalog.shapes import PAPER_MODELS
from flexserve.errors import ConfigError
from flexserve.systems.config import FLEXSERVE, SYSTEMS, SystemConfig
from flexserve.systems.schedule import SystemTiming, time_request
from flexserve.systems.shape_plan import shape_trace
from flexserve.timing.profile import DeviceProfile
from flexserve.timing.trace import pipeline_efficiency

#: The models of the paper's TTFT evaluation named in the secure-inference issue.
TTFT_MODELS = ("qwen3-0.6b", "qwen3-1.7b", "llama3.2-3b", "llama3.1-8b")
#: The paper does not give Figure 5's input lengths (FLEXSERVE.md); ours span short chat
#: prompts to long documents, in powers of two.
TTFT_PROMPT_TOKENS = (64, 128, 256, 512, 1024)
DECODE_TOKENS = 16


@dataclass(frozen=True)
class TtftPoint:
    """One model and prompt length, timed on every system."""

    model: str
    prompt_tokens: int
    timings: dict[str, SystemTiming]

    def ttft_s(self, system: str) -> float:
        return self.timings[system].ttft_s

    def speedup(self, of: str, over: str) -> float:
        """TTFT of ``over`` divided by TTFT of ``of`` (above 1: ``of`` is faster)."""
        return self.ttft_s(over) / self.ttft_s(of)

    def efficiency(self, system: str) -> float:
        """Busiest-resource lower bound over the modeled TTFT (1.0: no idle bottleneck)."""
        t = self.timings[system]
        return pipeline_efficiency(t.log, t.capacities, t.ttft_s)


def _shape(model: str):
    try:
        return PAPER_MODELS[model]
    except KeyError:
        raise ConfigError(f"unknown shape-only model {model!r}; known: "
                          f"{', '.join(PAPER_MODELS)}") from None


def time_point(model: str, prompt_tokens: int, profile: DeviceProfile,
               systems: Iterable[SystemConfig] = SYSTEMS.values(),
               decode_tokens: int = DECODE_TOKENS) -> TtftPoint:
    if prompt_tokens < 1:
        raise ConfigError("prompt lengths must be >= 1")
    trace = shape_trace(_shape(model), prompt_tokens, decode_tokens)
    return TtftPoint(model, prompt_tokens,
                     {s.name: time_request(trace, s, profile) for s in systems})


def ttft_sweep(profile: DeviceProfile, models: Sequence[str] = TTFT_MODELS,
               prompt_tokens: Sequence[int] = TTFT_PROMPT_TOKENS,
               systems: Iterable[SystemConfig] = SYSTEMS.values(),
               on_progress: Callable[[int, int], None] | None = None) -> list[TtftPoint]:
    """Every model at every prompt length on ``systems``; ``on_progress(done, total)``."""
    systems = list(systems)
    grid = [(model, n) for model in models for n in prompt_tokens]
    points = []
    for model, n in grid:
        points.append(time_point(model, n, profile, systems))
        if on_progress is not None:
            on_progress(len(points), len(grid))
    return points


def with_checkpointed_init(systems: Iterable[SystemConfig] = SYSTEMS.values()
                           ) -> list[SystemConfig]:
    """The systems with the framework's init restored from a checkpoint (TZ-LLM Sec. 3.2):
    a sensitivity setting showing how much of each TTFT the one-off init is."""
    return [s.with_options(framework_from_checkpoint=True) for s in systems]


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def average_speedup(points: Sequence[TtftPoint], over: str, of: str = FLEXSERVE.name
                    ) -> tuple[float, float]:
    """Arithmetic and geometric mean over the points of ``of``'s TTFT speedup over ``over``."""
    if not points:
        raise ConfigError("no points to average")
    ratios = [p.speedup(of, over) for p in points]
    return mean(ratios), geomean(ratios)


def write_csv(points: Sequence[TtftPoint], path: Path) -> Path:
    """One row per model, prompt length and system: TTFT, decode rate, bound, breakdown."""
    categories = ("compute", "decrypt", "io", "alloc", "init", "other", "idle")
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["model", "prompt_tokens", "system", "ttft_s", "decode_tokens_per_s",
                      "bound_resource", "bound_s", *[f"{c}_s" for c in categories]])
        for p in points:
            for name, t in p.timings.items():
                out.writerow([p.model, p.prompt_tokens, name, f"{t.ttft_s:.6f}",
                              f"{t.decode_tokens_per_s:.4f}", t.bound_resource,
                              f"{t.bound_s:.6f}",
                              *[f"{t.breakdown.get(c, 0.0):.6f}" for c in categories]])
    return path
