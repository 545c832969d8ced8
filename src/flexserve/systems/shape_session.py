"""Timing-only counterpart of :class:`~flexserve.systems.session.DeviceSession`.

The paper's models have no weights, so a sequence of their requests is evaluated on traces
written from their shapes. The cache is the same policy (:mod:`flexserve.tee.framework.
cache_policy`) over the same page-rounded layer sizes, and residency evolves as the
functional cache's does: after each request the requested model keeps its planned prefix,
the others are cut to theirs (:func:`~flexserve.tee.framework.cache_policy.next_residency`).
A model's framework init is paid on its first request only (it stays open), for every system.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.catalog.shapes import PAPER_MODELS, layer_sizes
from flexserve.engine.config import ModelConfig
from flexserve.errors import ConfigError
from flexserve.soc.constants import frame_rounded_bytes
from flexserve.systems.config import SystemConfig
from flexserve.systems.schedule import SystemTiming, time_request
from flexserve.systems.shape_plan import shape_trace, with_resident_prefix
from flexserve.tee.framework.cache_policy import (
    CachePolicyConfig,
    ModelDemand,
    UsageHistory,
    next_residency,
    plan,
)
from flexserve.tee.framework.trace import RequestTrace, StageKind
from flexserve.timing import costs
from flexserve.timing.profile import DeviceProfile


@dataclass(frozen=True)
class ShapeReply:
    model: str
    trace: RequestTrace
    timing: SystemTiming
    output_tokens: int
    resident_layers: int

    @property
    def latency_s(self) -> float:
        """TTFT plus the modeled decode of ``output_tokens`` (the call's end to end)."""
        return self.timing.ttft_s + self.output_tokens / self.timing.decode_tokens_per_s


def _shape(model: str) -> ModelConfig:
    try:
        return PAPER_MODELS[model]
    except KeyError:
        raise ConfigError(f"unknown shape-only model {model!r}; known: "
                          f"{', '.join(PAPER_MODELS)}") from None


def page_rounded_layer_bytes(shape: ModelConfig) -> tuple[int, ...]:
    return tuple(frame_rounded_bytes(layer.q8_0_bytes) for layer in layer_sizes(shape))


class ShapeSession:
    """A sequence of timing-only requests on one system, with its cache if it has one."""

    def __init__(self, system: SystemConfig, profile: DeviceProfile, cache_bytes: int,
                 window: int = 20) -> None:
        self.system, self.profile = system, profile
        self.policy = CachePolicyConfig(cache_bytes if system.cache else 0)
        self.history = UsageHistory(window)
        self.resident: dict[str, int] = {}
        self.opened: set[str] = set()
        self._layer_bytes: dict[str, tuple[int, ...]] = {}

    def request(self, model: str, prompt_tokens: int, output_tokens: int) -> ShapeReply:
        shape = _shape(model)
        trace = shape_trace(shape, prompt_tokens, output_tokens)
        if model in self.opened:
            trace.init_stages = []
        self.opened.add(model)
        resident = self.resident.get(model, 0)
        with_resident_prefix(trace, resident)
        timing = time_request(trace, self.system, self.profile)
        self._after(model, shape, prompt_tokens)
        return ShapeReply(model, trace, timing, output_tokens, resident)

    def declare(self, calls: list[tuple[str, int]]) -> None:
        """A declared workflow's calls (model, prompt tokens) become the usage history, so the
        cache is partitioned across the workflow's models before it runs."""
        for model, prompt_tokens in calls:
            self._layer_bytes.setdefault(model, page_rounded_layer_bytes(_shape(model)))
            self.history.record(model, prompt_tokens)

    def prefetch(self, model: str, window_s: float) -> int:
        """Restore ``model``'s next leading layers while the device decodes for ``window_s``
        (flash is idle then; the restore rate is the flash read of each layer's ciphertext,
        the slowest stage of a restore on this profile). Layers are admitted only within the
        plan's budget for ``model``. Returns how many layers were prefetched."""
        if not self.system.cache or window_s <= 0:
            return 0
        shape = _shape(model)
        self._layer_bytes.setdefault(model, page_rounded_layer_bytes(shape))
        planned = plan(self._demands(), self.policy).get(model, 0)
        have = self.resident.get(model, 0)
        count, spent_s = have, 0.0
        for layer in shape_trace(shape, 1, 1).layers[have:planned]:
            io = layer.stage(StageKind.IO)
            assert io is not None
            spent_s += costs.flash_read_s(io.n_bytes, io.requests, self.profile)
            if spent_s > window_s:
                break
            count += 1
        if count > have:
            self.resident[model] = count
        return count - have

    def set_budget(self, cache_bytes: int) -> None:
        """A new budget (memory pressure): residency is cut to the new plan at once."""
        self.policy = CachePolicyConfig(cache_bytes if self.system.cache else 0)
        kept = plan(self._demands(), self.policy)
        self.resident = {m: min(n, kept.get(m, 0)) for m, n in self.resident.items()
                         if min(n, kept.get(m, 0))}

    def resident_bytes(self) -> int:
        return sum(sum(self._layer_bytes[m][:n]) for m, n in self.resident.items())

    def _after(self, model: str, shape: ModelConfig, prompt_tokens: int) -> None:
        self._layer_bytes.setdefault(model, page_rounded_layer_bytes(shape))
        self.history.record(model, prompt_tokens)
        kept = plan(self._demands(), self.policy)
        self.resident = next_residency(self.resident, model, kept)

    def _demands(self) -> list[ModelDemand]:
        return [ModelDemand(m, sizes, self.history.rate(m), self.history.typical_prompt_tokens(m))
                for m, sizes in self._layer_bytes.items()]
