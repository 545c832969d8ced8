"""Running agent workflows: the multi-model scheduler over a device session.

Policy (docs/scheduler.md):

- **Order**: among the calls whose dependencies are done, the current model's first, then
  the one whose model has the most layers resident, then declaration order, so a DAG does
  not reload a model it could have finished with (no reload thrash).
- **Partitioning**: a declared workflow's calls become the cache's usage history before it
  runs, so the budget is split across the workflow's models by how often they are called
  and how long their prompts are (:mod:`flexserve.tee.framework.cache_policy`).
- **Prefetch**: while a call decodes (flash and crypto idle), the next call's model gets its
  next leading layers restored, as many as fit in the decode time and in its budget. The
  next model is the scheduler's next choice for a declared workflow, else the learned
  :class:`~flexserve.workflow.predictor.NextModelPredictor`'s most likely model.

The timing-only runner executes these decisions on a
:class:`~flexserve.systems.shape_session.ShapeSession`; the real runner produces text on a
:class:`~flexserve.systems.session.DeviceSession` (bundled models) with the same ordering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from flexserve.engine.sampling import SamplingParams
from flexserve.errors import ConfigError
from flexserve.systems.config import SystemConfig
from flexserve.systems.runner import Prompt
from flexserve.systems.session import DeviceSession
from flexserve.systems.shape_session import ShapeSession
from flexserve.timing.profile import DeviceProfile
from flexserve.workflow.predictor import NextModelPredictor
from flexserve.workflow.spec import LlmCall, Workflow


@dataclass(frozen=True)
class CallResult:
    name: str
    model: str
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    latency_s: float
    resident_layers: int
    prefetched_layers: int = 0
    text: str | None = None


@dataclass(frozen=True)
class AgentRun:
    workflow: str
    system: str
    calls: tuple[CallResult, ...]

    @property
    def latency_s(self) -> float:
        """End to end: the calls run one after another on the device."""
        return sum(c.latency_s for c in self.calls)


def next_call(ready: Sequence[LlmCall], resident: Mapping[str, int],
              current: str | None) -> LlmCall:
    """The scheduler's choice among ``ready`` calls (see the module docstring)."""
    if not ready:
        raise ConfigError("no call is ready")
    return min(enumerate(ready), key=lambda ic: (ic[1].model != current,
                                                 -resident.get(ic[1].model, 0), ic[0]))[1]


def schedule_order(workflow: Workflow, resident: Callable[[], Mapping[str, int]]
                   ) -> list[LlmCall]:
    """The full order the scheduler would run, given the residency it sees at each step."""
    done: set[str] = set()
    order: list[LlmCall] = []
    current = None
    while len(order) < len(workflow.calls):
        ready = [c for c in workflow.ready(done) if c.name not in done]
        call = next_call(ready, resident(), current)
        order.append(call)
        done.add(call.name)
        current = call.model
    return order


def _upcoming(workflow: Workflow, done: set[str], current: str,
              resident: Mapping[str, int]) -> str | None:
    ready = [c for c in workflow.ready(done) if c.name not in done]
    return next_call(ready, resident, current).model if ready else None


def run_timing(workflow: Workflow, system: SystemConfig, profile: DeviceProfile,
               cache_bytes: int, *, runs: int = 1, declared: bool = True,
               prefetch: bool = True) -> list[AgentRun]:
    """``runs`` invocations of ``workflow`` in one timing-only session (the first is cold)."""
    for call in workflow.calls:
        if call.prompt_tokens is None:
            raise ConfigError(f"call {call.name!r} has no prompt_tokens: not a timing-only "
                              "workflow")
    session = ShapeSession(system, profile, cache_bytes)
    predictor = NextModelPredictor()
    if declared:
        session.declare([(c.model, int(c.prompt_tokens or 0)) for c in workflow.order()])
    return [_one_timing_run(workflow, session, predictor, declared, prefetch)
            for _ in range(runs)]


def _one_timing_run(workflow: Workflow, session: ShapeSession, predictor: NextModelPredictor,
                    declared: bool, prefetch: bool) -> AgentRun:
    done: set[str] = set()
    results: list[CallResult] = []
    current: str | None = None
    prefetched: dict[str, int] = {}
    while len(done) < len(workflow.calls):
        ready = [c for c in workflow.ready(done) if c.name not in done]
        call = next_call(ready, session.resident, current)
        reply = session.request(call.model, int(call.prompt_tokens or 0), call.output_tokens)
        predictor.observe(call.model)
        done.add(call.name)
        current = call.model
        nxt = _upcoming(workflow, done, current, session.resident) if declared else \
            next(iter(predictor.predict(top_k=1, after=current)), (None, 0.0))[0]
        got = 0
        if prefetch and nxt is not None and nxt != current:
            window_s = call.output_tokens / reply.timing.decode_tokens_per_s
            got = session.prefetch(nxt, window_s)
        results.append(CallResult(call.name, call.model, reply.trace.prompt_tokens,
                                  call.output_tokens, reply.timing.ttft_s, reply.latency_s,
                                  reply.resident_layers, prefetched.pop(call.model, 0)))
        if got:
            prefetched[nxt] = got  # type: ignore[index]
    return AgentRun(workflow.name, session.system.name, tuple(results))


def run_real(workflow: Workflow, session: DeviceSession, params: SamplingParams,
             on_call: Callable[[CallResult], None] | None = None) -> AgentRun:
    """One invocation with real text on the emulated device (bundled models)."""
    outputs: dict[str, str] = {}
    results: list[CallResult] = []
    for call in schedule_order(workflow, lambda: _resident_counts(session)):
        text = call.render(outputs)
        reply = session.generate(call.model, Prompt(text, raw=True),
                                 _with_max_tokens(params, call.output_tokens))
        outputs[call.name] = reply.answer.text
        timing = reply.timing
        decode_s = reply.answer.completion_tokens / timing.decode_tokens_per_s
        result = CallResult(call.name, call.model, reply.answer.prompt_tokens,
                            reply.answer.completion_tokens, timing.ttft_s,
                            timing.ttft_s + decode_s,
                            sum(1 for layer in reply.trace.layers if layer.resident),
                            text=reply.answer.text)
        results.append(result)
        if on_call is not None:
            on_call(result)
    return AgentRun(workflow.name, session.system.name, tuple(results))


def _resident_counts(session: DeviceSession) -> dict[str, int]:
    cache = session.device.ta.cache
    if cache is None:
        return {}
    by_blob = {name: len(model.layers) for name, model in cache.models.items()}
    return {model: by_blob.get(blob, 0) for model, blob in session.open_blobs().items()}


def _with_max_tokens(params: SamplingParams, max_tokens: int) -> SamplingParams:
    from dataclasses import replace

    return replace(params, max_tokens=max_tokens)
