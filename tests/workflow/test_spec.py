"""Workflow specs: every validation error, topological order, first-use models, readiness."""

from __future__ import annotations

import pytest

from flexserve.errors import ConfigError
from flexserve.workflow.spec import LlmCall, Workflow, prompt_fields


def call(name: str, *deps: str, model: str = "m", prompt: str = "p", **kw) -> LlmCall:
    return LlmCall(name, model, prompt, kw.pop("output_tokens", 4), deps=deps, **kw)


def flow(*calls: LlmCall) -> Workflow:
    return Workflow("w", "test workflow", calls)


def test_valid_workflow_builds():
    wf = flow(call("a"), call("b", "a", prompt="use {a}"))
    assert [c.name for c in wf.calls] == ["a", "b"]
    assert wf.call("b").placeholders == ("a",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "identifier"),
        ({"name": "has space"}, "identifier"),
        ({"model": ""}, "model must be a non-empty"),
        ({"model": "  "}, "model must be a non-empty"),
        ({"output_tokens": 0}, "output_tokens must be an integer >= 1"),
        ({"output_tokens": -3}, "output_tokens must be an integer >= 1"),
        ({"output_tokens": 2.5}, "output_tokens must be an integer >= 1"),
        ({"output_tokens": True}, "output_tokens must be an integer >= 1"),
        ({"prompt_tokens": 0}, "prompt_tokens must be an integer >= 1"),
        ({"prompt": "", "prompt_tokens": None}, "needs a prompt text or prompt_tokens"),
        ({"prompt": 5}, "prompt must be a string"),
        ({"deps": ["a"]}, "deps must be a tuple"),
        ({"deps": ("a", "a")}, "lists a call twice"),
        ({"deps": ("x",)}, "depends on itself"),
        ({"prompt": "broken {"}, "malformed placeholder"),
        ({"prompt": "attr {a.b}"}, "bare call name"),
        ({"prompt": "positional {}"}, "bare call name"),
    ],
)
def test_bad_call_is_refused(kwargs, message):
    base = {"name": "x", "model": "m", "prompt": "p", "output_tokens": 1}
    with pytest.raises(ConfigError, match=message):
        LlmCall(**(base | kwargs))


def test_timing_only_call_needs_no_text():
    assert LlmCall("x", "m", "", 8, prompt_tokens=100).prompt_tokens == 100


@pytest.mark.parametrize(
    ("calls", "message"),
    [
        ((), "non-empty tuple"),
        ((call("a"), call("a")), "two calls are named 'a'"),
        ((call("a", "ghost"),), "unknown call 'ghost'"),
        ((call("a"), call("b", prompt="{a}")), r"uses \{a\} but does not depend on 'a'"),
        ((call("a", "b"), call("b", "a")), "dependency cycle a -> b -> a"),
        ((call("a"), call("b", "a", "d"), call("c", "b"), call("d", "c")),
         "dependency cycle b -> d -> c -> b"),
    ],
)
def test_bad_workflow_is_refused(calls, message):
    with pytest.raises(ConfigError, match=message):
        flow(*calls)


def test_workflow_fields_are_checked():
    with pytest.raises(ConfigError, match="name must be a non-empty"):
        Workflow("", "d", (call("a"),))
    with pytest.raises(ConfigError, match="description must be a string"):
        Workflow("w", None, (call("a"),))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="calls must be a non-empty tuple"):
        Workflow("w", "d", [call("a")])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="every call must be an LlmCall"):
        Workflow("w", "d", ("a",))  # type: ignore[arg-type]


def test_errors_are_one_line():
    with pytest.raises(ConfigError) as info:
        flow(call("a", "b"), call("b", "a"))
    assert "\n" not in str(info.value)


def test_order_is_topological_with_ties_by_declaration():
    # d is declared first but needs c; b and c are both ready after a: b is declared first.
    wf = flow(call("d", "c"), call("a"), call("c", "a"), call("b", "a"), call("e"))
    assert [c.name for c in wf.order()] == ["a", "c", "d", "b", "e"]


def test_order_respects_every_dependency():
    wf = flow(call("s", "p2", "p1"), call("p1", "r"), call("p2", "r"), call("r"))
    position = {c.name: i for i, c in enumerate(wf.order())}
    for c in wf.calls:
        assert all(position[dep] < position[c.name] for dep in c.deps)
    assert [c.name for c in wf.order()] == ["r", "p1", "p2", "s"]


def test_models_in_first_use_order():
    wf = flow(call("late", "b", model="big"), call("a", model="small"),
              call("b", "a", model="mid"), call("c", "late", model="small"))
    assert wf.models() == ("small", "mid", "big")


def test_ready_follows_progress():
    wf = flow(call("a"), call("b"), call("c", "a", "b"), call("d", "c"))
    assert [c.name for c in wf.ready(set())] == ["a", "b"]
    assert [c.name for c in wf.ready({"a"})] == ["b"]
    assert [c.name for c in wf.ready({"a", "b"})] == ["c"]
    assert wf.ready({"a", "b", "c", "d"}) == ()
    with pytest.raises(ConfigError, match="no call 'zz'"):
        wf.ready({"zz"})


def test_call_lookup():
    wf = flow(call("a"))
    assert wf.call("a").name == "a"
    with pytest.raises(ConfigError, match="no call 'b'"):
        wf.call("b")


def test_render_fills_dependency_outputs():
    c = call("b", "a", prompt="Q: {a}\nliteral {{braces}}")
    assert c.render({"a": "hello"}) == "Q: hello\nliteral {braces}"
    with pytest.raises(ConfigError, match="no output yet for a"):
        c.render({})


def test_prompt_fields_deduplicates_in_order():
    assert prompt_fields("{b} {a} {b}") == ("b", "a")
