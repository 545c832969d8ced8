"""Which weights stay in Flex-Mem between requests: the LLM-aware cache plan (pure policy).

FlexServe (FLEXSERVE.md, "LLM-aware memory management"): cache the models whose recent
invocation rate is above a threshold (default 25%), else the top 3; a model's budget grows
with its invocation rate and shrinks with its typical prompt length (long prompts are
compute-bound, so the pipeline hides their I/O anyway); a model that does not fit keeps its
**first** layers, so computation starts at once while the rest streams in.

The plan is a function of numbers only (rates, prompt lengths, layer sizes, a budget), so the
functional cache (:mod:`.model_cache`) and the timing-only evaluation use the same code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median

from flexserve.errors import ConfigError


@dataclass(frozen=True)
class CachePolicyConfig:
    """The policy's knobs (docs/cache.md says why each default)."""

    budget_bytes: int
    rate_threshold: float = 0.25
    fallback_top_n: int = 3
    prompt_scale_tokens: float = 512.0

    def __post_init__(self) -> None:
        if self.budget_bytes < 0:
            raise ConfigError("cache budget must be >= 0 bytes")
        if not 0.0 <= self.rate_threshold <= 1.0:
            raise ConfigError("rate_threshold must be in [0, 1]")
        if self.fallback_top_n < 1 or self.prompt_scale_tokens <= 0:
            raise ConfigError("fallback_top_n must be >= 1 and prompt_scale_tokens > 0")


@dataclass(frozen=True)
class ModelDemand:
    """What the policy knows of one model: its layer sizes in load order and its use."""

    name: str
    layer_bytes: tuple[int, ...]
    rate: float
    typical_prompt_tokens: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(self.layer_bytes)


def chosen_models(demands: Sequence[ModelDemand], config: CachePolicyConfig) -> list[str]:
    """Models above the rate threshold; if none is, the ``fallback_top_n`` most used."""
    used = [d for d in demands if d.rate > 0]
    hot = [d.name for d in used if d.rate > config.rate_threshold]
    if hot:
        return hot
    ranked = sorted(used, key=lambda d: (-d.rate, d.name))
    return [d.name for d in ranked[: config.fallback_top_n]]


def weight(demand: ModelDemand, config: CachePolicyConfig) -> float:
    """Budget weight: invocation rate, discounted by typical prompt length."""
    return demand.rate / (1.0 + demand.typical_prompt_tokens / config.prompt_scale_tokens)


def budgets(demands: Sequence[ModelDemand], config: CachePolicyConfig) -> dict[str, int]:
    """Bytes per chosen model: shares of the budget by weight, capped at the model's size,
    with what a capped model does not need handed to the others (water filling)."""
    chosen = {d.name: d for d in demands if d.name in chosen_models(demands, config)}
    out: dict[str, int] = {}
    left = config.budget_bytes
    while chosen and left > 0:
        total_w = sum(weight(d, config) for d in chosen.values())
        shares = {n: left * weight(d, config) / total_w for n, d in chosen.items()}
        capped = [n for n, d in chosen.items() if d.total_bytes <= shares[n]]
        if not capped:
            out.update({n: int(s) for n, s in shares.items()})
            break
        for name in capped:
            out[name] = chosen.pop(name).total_bytes
            left -= out[name]
    return out


def kept_layers(layer_bytes: Sequence[int], budget_bytes: int) -> int:
    """How many leading layers fit in ``budget_bytes``."""
    used = 0
    for count, size in enumerate(layer_bytes):
        if used + size > budget_bytes:
            return count
        used += size
    return len(layer_bytes)


def plan(demands: Sequence[ModelDemand], config: CachePolicyConfig) -> dict[str, int]:
    """Model name -> number of leading layers to keep resident (models absent: none)."""
    by_name: Mapping[str, ModelDemand] = {d.name: d for d in demands}
    kept = {name: kept_layers(by_name[name].layer_bytes, b)
            for name, b in budgets(demands, config).items()}
    return {name: n for name, n in kept.items() if n}


def planned_bytes(demands: Sequence[ModelDemand], kept: Mapping[str, int]) -> int:
    by_name = {d.name: d for d in demands}
    return sum(sum(by_name[n].layer_bytes[:k]) for n, k in kept.items())


class UsageHistory:
    """The last ``window`` invocations: rates and typical prompt lengths per model."""

    def __init__(self, window: int = 20) -> None:
        if window < 1:
            raise ConfigError("the usage window must be >= 1 invocation")
        self._calls: deque[tuple[str, int]] = deque(maxlen=window)

    def record(self, model: str, prompt_tokens: int) -> None:
        self._calls.append((model, prompt_tokens))

    def rate(self, model: str) -> float:
        if not self._calls:
            return 0.0
        return sum(1 for m, _ in self._calls if m == model) / len(self._calls)

    def typical_prompt_tokens(self, model: str) -> float:
        lengths = [n for m, n in self._calls if m == model]
        return float(median(lengths)) if lengths else 0.0


def next_residency(resident: Mapping[str, int], requested: str,
                   kept: Mapping[str, int]) -> dict[str, int]:
    """Leading layers resident after a request: the requested model's planned prefix (it was
    just loaded), every other model's current prefix cut to its plan (a plan never grows a
    model that is not loading)."""
    out = {requested: kept.get(requested, 0)}
    for name, count in resident.items():
        if name != requested:
            out[name] = min(count, kept.get(name, 0))
    return {name: count for name, count in out.items() if count}
