"""The multi-model scheduler: ordering, partitioning, prefetch, and the agent command."""

from __future__ import annotations

import pytest

from flexserve.cli import main
from flexserve.errors import ConfigError
from flexserve.soc.constants import GIB
from flexserve.systems.agent import next_call, run_timing, schedule_order
from flexserve.systems.config import FLEXSERVE, STRAWMAN, STRAWMAN_OPT
from flexserve.systems.shape_session import ShapeSession
from flexserve.timing.profile import load_profile
from flexserve.workflow.builtin import BUILTIN_WORKFLOWS, ROUTER
from flexserve.workflow.spec import LlmCall, Workflow


@pytest.fixture(scope="module")
def profile():
    return load_profile("rk3588")


def _call(name: str, model: str, deps: tuple[str, ...] = ()) -> LlmCall:
    return LlmCall(name, model, "p", 4, deps=deps, prompt_tokens=16)


def test_the_current_model_goes_first_then_the_most_resident() -> None:
    a, b, c = _call("a", "m1"), _call("b", "m2"), _call("c", "m3")
    assert next_call([a, b, c], {}, "m2") is b
    assert next_call([a, b, c], {"m3": 5, "m1": 2}, None) is c
    assert next_call([a, b, c], {}, None) is a
    with pytest.raises(ConfigError):
        next_call([], {}, None)


def test_a_dag_finishes_with_a_model_before_reloading_another() -> None:
    wf = Workflow("dag", "two branches", (
        _call("x1", "big"), _call("y1", "small"), _call("x2", "big", ("x1",)),
        _call("y2", "small", ("y1",)), _call("join", "big", ("x2", "y2"))))
    order = [c.name for c in schedule_order(wf, lambda: {})]
    assert order == ["x1", "x2", "y1", "y2", "join"]  # declaration order would switch 4 times


@pytest.mark.parametrize("name", sorted(BUILTIN_WORKFLOWS))
def test_every_builtin_schedule_respects_dependencies(name: str) -> None:
    wf = BUILTIN_WORKFLOWS[name]
    seen: set[str] = set()
    for call in schedule_order(wf, lambda: {}):
        assert set(call.deps) <= seen
        seen.add(call.name)
    assert seen == {c.name for c in wf.calls}


def test_warm_runs_reuse_the_cache_and_flexserve_waits_least(profile) -> None:
    ttft = {}
    for system in (STRAWMAN, STRAWMAN_OPT, FLEXSERVE):
        runs = run_timing(ROUTER, system, profile, 4 * GIB, runs=2)
        ttft[system.name] = sum(c.ttft_s for c in runs[1].calls)
        if system.cache:
            assert runs[1].latency_s < runs[0].latency_s
            assert all(c.resident_layers for c in runs[1].calls)
        else:
            assert not any(c.resident_layers for c in runs[1].calls)
    assert ttft["flexserve"] < ttft["strawman-opt"] < ttft["strawman"]


def test_prefetch_restores_the_next_model_during_decode(profile) -> None:
    cold = run_timing(ROUTER, FLEXSERVE, profile, 4 * GIB)[0]
    assert cold.calls[1].prefetched_layers > 0
    assert cold.calls[1].resident_layers == cold.calls[1].prefetched_layers
    assert run_timing(ROUTER, FLEXSERVE, profile, 4 * GIB,
                      prefetch=False)[0].calls[1].prefetched_layers == 0

    def answer_ttft_after_pressure(prefetch: bool) -> tuple[float, int]:
        session = ShapeSession(FLEXSERVE, profile, 4 * GIB)
        session.declare([(c.model, c.prompt_tokens) for c in ROUTER.order()])
        for call in ROUTER.order():  # both models opened and resident
            session.request(call.model, call.prompt_tokens, call.output_tokens)
        session.set_budget(0)  # memory pressure took every layer back ...
        session.set_budget(4 * GIB)  # ... and is gone again
        classify = session.request("qwen3-0.6b", 232, 8)
        got = session.prefetch("llama3.1-8b", 8 / classify.timing.decode_tokens_per_s) \
            if prefetch else 0
        return session.request("llama3.1-8b", 192, 256).timing.ttft_s, got

    (with_s, got), (without_s, _) = answer_ttft_after_pressure(True), \
        answer_ttft_after_pressure(False)
    assert got > 0 and with_s < without_s


def test_the_predictor_learns_an_undeclared_workflow(profile) -> None:
    runs = run_timing(ROUTER, FLEXSERVE, profile, 4 * GIB, runs=3, declared=False)
    assert runs[0].calls[1].prefetched_layers == 0  # nothing learned yet
    assert all(c.resident_layers for c in runs[2].calls)


def test_timing_only_needs_prompt_lengths(profile) -> None:
    wf = Workflow("w", "no lengths", (LlmCall("a", "qwen3-0.6b", "hi", 4),))
    with pytest.raises(ConfigError, match="prompt_tokens"):
        run_timing(wf, FLEXSERVE, profile, GIB)


def test_cli_agent_times_the_three_systems(capsys) -> None:
    assert main(["agent", "router", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    for label in ("Strawman", "Strawman-OPT", "FlexServe", "classify", "answer"):
        assert label in out


def test_cli_agent_rejects_unknown_workflows(capsys) -> None:
    assert main(["agent", "nope"]) == 2
    assert "unknown workflow" in capsys.readouterr().err
