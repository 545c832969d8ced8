"""Workflow TOML: loading, every kind of error as ConfigError, and dump/load round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexserve.errors import ConfigError
from flexserve.workflow.dump import dump_workflow
from flexserve.workflow.load import load_workflow, parse_workflow, workflow_from_dict
from flexserve.workflow.spec import LlmCall, Workflow

EXAMPLE = """
name = "router"
description = "classify, then answer"

[[calls]]
name = "classify"
model = "qwen3-0.6b"
prompt_tokens = 200
output_tokens = 8

[[calls]]
name = "answer"
model = "llama3.1-8b"
prompt = "Route: {classify}"
deps = ["classify"]
output_tokens = 256
"""


def test_loads_example(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    wf = load_workflow(path)
    assert wf == Workflow("router", "classify, then answer", (
        LlmCall("classify", "qwen3-0.6b", "", 8, prompt_tokens=200),
        LlmCall("answer", "llama3.1-8b", "Route: {classify}", 256, deps=("classify",)),
    ))


def test_description_is_optional():
    text = 'name = "w"\n[[calls]]\nname = "a"\nmodel = "m"\nprompt = "p"\noutput_tokens = 1\n'
    assert parse_workflow(text).description == ""


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_workflow(tmp_path / "absent.toml")


def test_unreadable_file(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read"):
        load_workflow(path)


def test_bad_toml_names_the_source(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "unterminated\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_workflow(path)


def base() -> dict:
    return {"name": "w", "calls": [{"name": "a", "model": "m", "prompt": "p",
                                    "output_tokens": 4}]}


def with_call(**changes) -> dict:
    data = base()
    data["calls"][0].update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"calls": []}, "missing required key 'name'"),
        ({"name": "w"}, "missing required key 'calls'"),
        (base() | {"nmae": "x"}, "unknown key 'nmae'"),
        (base() | {"name": 3}, "name must be a string, got int"),
        (base() | {"calls": {"a": 1}}, "calls must be an array"),
        (base() | {"calls": ["a"]}, r"calls\[0\] must be a table"),
        (base() | {"calls": []}, "non-empty tuple"),
        (with_call(outputs=3), r"calls\[0\]: unknown key 'outputs'"),
        ({"name": "w", "calls": [{"name": "a", "model": "m"}]},
         "missing required key 'output_tokens'"),
        (with_call(output_tokens="8"), "output_tokens must be an integer, got str"),
        (with_call(output_tokens=True), "output_tokens must be an integer, got bool"),
        (with_call(output_tokens=1.5), "output_tokens must be an integer, got float"),
        (with_call(output_tokens=0), "output_tokens must be an integer >= 1"),
        (with_call(deps="b"), "deps must be an array"),
        (with_call(deps=[1]), "deps must be a list of strings"),
        (with_call(deps=["ghost"]), "unknown call 'ghost'"),
        (with_call(model=""), "model must be a non-empty"),
        (with_call(prompt_tokens=-1), "prompt_tokens must be an integer >= 1"),
    ],
)
def test_bad_dict_is_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        workflow_from_dict(data, "f.toml")


def test_error_names_the_call_index():
    with pytest.raises(ConfigError, match=r"^f\.toml: calls\[0\]: call 'a': output_tokens"):
        workflow_from_dict(with_call(output_tokens=0), "f.toml")


def test_round_trip_example():
    wf = parse_workflow(EXAMPLE)
    assert parse_workflow(dump_workflow(wf)) == wf


names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
texts = st.text(max_size=40).filter(lambda s: "{" not in s and "}" not in s)


@st.composite
def workflows(draw) -> Workflow:
    call_names = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    calls = []
    for index, name in enumerate(call_names):
        deps = tuple(draw(st.lists(st.sampled_from(call_names[:index]), unique=True))
                     if index else [])
        fields = "".join(f"{{{dep}}}" for dep in deps)
        prompt = draw(texts) + fields
        prompt_tokens = draw(st.one_of(st.none(), st.integers(1, 10_000)))
        if not prompt and prompt_tokens is None:
            prompt_tokens = 1
        calls.append(LlmCall(name, draw(texts.filter(str.strip)), prompt,
                             draw(st.integers(1, 4096)), deps, prompt_tokens))
    return Workflow(draw(texts.filter(str.strip)), draw(texts), tuple(calls))


@given(workflows())
def test_round_trip_any_workflow(wf):
    assert parse_workflow(dump_workflow(wf)) == wf


AWKWARD = ['quote " and \\ backslash', "tab\tnew\nline\r", "del \x7f nul \x00",
           "unicode é ✓ 🙂", "''' and \"\"\""]


@pytest.mark.parametrize("text", AWKWARD)
def test_round_trip_awkward_text(text):
    wf = Workflow(text, text, (LlmCall("a", text, text + " {{x}}", 1),))
    assert parse_workflow(dump_workflow(wf)) == wf
