"""Built-in workflows: valid, on known catalog models, the shapes the issue asks for."""

from __future__ import annotations

import itertools

import pytest

from flexserve.catalog import resolve
from flexserve.catalog.bundled import BUNDLED_MODELS
from flexserve.catalog.shapes import PAPER_MODELS
from flexserve.errors import ConfigError
from flexserve.workflow import builtin
from flexserve.workflow.builtin import BUILTIN_WORKFLOWS, chatml, workflow
from flexserve.workflow.dump import dump_workflow
from flexserve.workflow.load import parse_workflow

TIMING_ONLY = ["router", "plan-act-summarize", "rag-rewrite"]
REAL = ["quiz"]


def test_registry():
    assert sorted(BUILTIN_WORKFLOWS) == sorted(TIMING_ONLY + REAL)
    assert all(name == wf.name for name, wf in BUILTIN_WORKFLOWS.items())


@pytest.mark.parametrize("name", TIMING_ONLY)
def test_timing_only_workflows_use_paper_models(name):
    wf = BUILTIN_WORKFLOWS[name]
    for call in wf.calls:
        assert call.model in PAPER_MODELS
        assert resolve(call.model).shape is not None
        # Every prompt carries the user request and a chat template.
        assert call.prompt_tokens is not None
        assert call.prompt_tokens >= builtin.USER_REQUEST_TOKENS + builtin.TEMPLATE_TOKENS
        assert call.prompt_tokens + call.output_tokens <= PAPER_MODELS[call.model].context_length


@pytest.mark.parametrize("name", REAL)
def test_real_workflow_uses_bundled_models(name):
    wf = BUILTIN_WORKFLOWS[name]
    assert set(wf.models()) == {"smollm2-135m", "gemma3-270m"}
    for call in wf.calls:
        assert call.model in BUNDLED_MODELS
        assert call.prompt and call.prompt_tokens is None
        assert call.output_tokens <= 48


@pytest.mark.parametrize("name", REAL)
def test_real_workflow_models_resolve(name, smollm2_path, gemma3_path):
    for model in BUILTIN_WORKFLOWS[name].models():
        assert resolve(model).has_weights


def test_router_shape():
    wf = BUILTIN_WORKFLOWS["router"]
    assert wf.models() == ("qwen3-0.6b", "llama3.1-8b")
    classify, answer = wf.order()
    assert answer.deps == (classify.name,)
    assert classify.output_tokens < 16 < answer.output_tokens


def test_plan_act_summarize_shape():
    wf = BUILTIN_WORKFLOWS["plan-act-summarize"]
    order = wf.order()
    models = [call.model for call in order]
    assert models[0] == models[-1] == "qwen3-1.7b"
    acts = order[1:-1]
    assert 2 <= len(acts) <= 3 and all(c.model == "llama3.2-3b" for c in acts)
    growth = [b.prompt_tokens - a.prompt_tokens for a, b in itertools.pairwise(acts)]
    assert all(g == builtin.ACT_STEP_GROWTH_TOKENS for g in growth)
    assert set(order[-1].deps) == {"plan", *(c.name for c in acts)}


def test_rag_answer_prompt_holds_the_retrieved_context():
    wf = BUILTIN_WORKFLOWS["rag-rewrite"]
    rewrite, answer = wf.order()
    assert (rewrite.model, answer.model) == ("qwen3-0.6b", "qwen3-8b")
    context_tokens = builtin.RETRIEVED_CHUNKS * builtin.CHUNK_TOKENS
    assert answer.prompt_tokens >= context_tokens + rewrite.output_tokens
    assert answer.deps == ("rewrite",)


@pytest.mark.parametrize("name", sorted(BUILTIN_WORKFLOWS))
def test_builtin_round_trips_through_toml(name, tmp_path):
    wf = BUILTIN_WORKFLOWS[name]
    assert parse_workflow(dump_workflow(wf)) == wf
    path = tmp_path / f"{name}.toml"
    path.write_text(dump_workflow(wf), encoding="utf-8")
    assert workflow(path) == wf
    assert workflow(str(path)) == wf


def test_workflow_resolves_names_and_refuses_others(tmp_path):
    assert workflow("router") is BUILTIN_WORKFLOWS["router"]
    with pytest.raises(ConfigError, match="unknown workflow 'nope'; builtins: router"):
        workflow("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        workflow(tmp_path / "absent.toml")


def test_quiz_renders_real_text():
    qa, fact = BUILTIN_WORKFLOWS["quiz"].order()
    text = fact.render({"qa": "Q: Why?\nA: Because."})
    assert "Q: Why?\nA: Because." in text and "{" not in text
    assert qa.render({}).endswith("<|im_start|>assistant\n")


def test_chatml_matches_smollm2_template(smollm2_path):
    from flexserve.engine.chat_template import ChatTemplate
    from flexserve.engine.gguf_file import GGUFFile

    template = ChatTemplate.from_metadata(GGUFFile.open(smollm2_path).metadata)
    rendered = template.render([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert chatml("hi") == rendered
