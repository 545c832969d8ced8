"""TTFT with a Flex-Mem cache: the paper's model pairs on the four prompt sets (Figure 8).

A workload is a seeded sequence of requests, each to one model of a pair (chosen uniformly),
with the prompt lengths of a prompt set in file order (clipped at ``max_prompt_tokens``; the
chat template adds ``TEMPLATE_TOKENS``). Each system serves the same sequence in its own
:class:`~flexserve.systems.shape_session.ShapeSession`: FlexServe with its cache, the strawmen
without one (both keep models open, so framework init is paid once per model). The mean TTFT
excludes the first request of each model (its framework init is the same for every system).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flexserve.errors import ConfigError
from flexserve.soc.constants import GIB
from flexserve.systems.config import FLEXSERVE, STRAWMAN, STRAWMAN_OPT, SystemConfig
from flexserve.systems.shape_session import ShapeSession
from flexserve.timing.profile import DeviceProfile
from flexserve.workflow.builtin import TEMPLATE_TOKENS

#: The paper's Figure 8 pairs (FLEXSERVE.md).
MODEL_PAIRS: tuple[tuple[str, str], ...] = (
    ("qwen3-1.7b", "llama3.1-8b"), ("qwen3-0.6b", "qwen3-1.7b"),
    ("qwen3-0.6b", "qwen3-8b"), ("qwen3-1.7b", "llama3.2-3b"))
PROMPT_SETS = ("sharegpt", "oa", "dd", "ad")
CACHE_SYSTEMS = (STRAWMAN, STRAWMAN_OPT, FLEXSERVE)
DEFAULT_CACHE_BYTES = 4 * GIB
DEFAULT_REQUESTS = 30
#: On-device prompts: ShareGPT's longest first turns run to 20k tokens; a phone assistant
#: would truncate, and one 20k prefill would swamp every mean.
DEFAULT_MAX_PROMPT_TOKENS = 2048
OUTPUT_TOKENS = 64


@dataclass(frozen=True)
class Workload:
    pair: tuple[str, str]
    prompt_set: str
    requests: tuple[tuple[str, int], ...]  # (model, prompt tokens)


def make_workload(pair: tuple[str, str], prompt_set: str, lengths: Sequence[int],
                  n_requests: int, seed: int = 0,
                  max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS) -> Workload:
    if n_requests < 1 or not lengths:
        raise ConfigError("a workload needs >= 1 request and a non-empty prompt set")
    rng = random.Random(seed)
    requests = tuple((rng.choice(pair), min(lengths[i % len(lengths)], max_prompt_tokens)
                      + TEMPLATE_TOKENS) for i in range(n_requests))
    return Workload(pair, prompt_set, requests)


@dataclass(frozen=True)
class WorkloadResult:
    workload: Workload
    ttft_s: dict[str, tuple[float, ...]]  # system -> TTFT of every request

    def mean_ttft_s(self, system: str) -> float:
        """Mean over the requests that are not a model's first (no framework init)."""
        seen: set[str] = set()
        values = []
        for (model, _), ttft in zip(self.workload.requests, self.ttft_s[system], strict=True):
            if model in seen:
                values.append(ttft)
            seen.add(model)
        if not values:
            raise ConfigError("the workload has no request after each model's first")
        return sum(values) / len(values)

    def speedup(self, over: str, of: str = FLEXSERVE.name) -> float:
        return self.mean_ttft_s(over) / self.mean_ttft_s(of)


def run_workload(workload: Workload, profile: DeviceProfile, cache_bytes: int,
                 systems: Sequence[SystemConfig] = CACHE_SYSTEMS) -> WorkloadResult:
    out: dict[str, tuple[float, ...]] = {}
    for system in systems:
        session = ShapeSession(system, profile, cache_bytes)
        out[system.name] = tuple(session.request(model, n, OUTPUT_TOKENS).timing.ttft_s
                                 for model, n in workload.requests)
    return WorkloadResult(workload, out)


def cache_sweep(profile: DeviceProfile, lengths_by_set: dict[str, Sequence[int]], *,
                pairs: Sequence[tuple[str, str]] = MODEL_PAIRS,
                cache_bytes: int = DEFAULT_CACHE_BYTES, n_requests: int = DEFAULT_REQUESTS,
                seed: int = 0, on_progress: Callable[[int, int], None] | None = None
                ) -> list[WorkloadResult]:
    grid = [(pair, name) for pair in pairs for name in lengths_by_set]
    results = []
    for pair, name in grid:
        workload = make_workload(pair, name, lengths_by_set[name], n_requests, seed)
        results.append(run_workload(workload, profile, cache_bytes))
        if on_progress is not None:
            on_progress(len(results), len(grid))
    return results


def write_csv(results: Sequence[WorkloadResult], path: Path) -> Path:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["pair", "prompt_set", "request", "model", "prompt_tokens", "system",
                      "ttft_s"])
        for r in results:
            pair = "+".join(r.workload.pair)
            for system, values in r.ttft_s.items():
                for i, ((model, n), ttft) in enumerate(zip(r.workload.requests, values,
                                                           strict=True)):
                    out.writerow([pair, r.workload.prompt_set, i, model, n, system,
                                  f"{ttft:.6f}"])
    return path
