"""Chat template rendering, message validation and the sandbox around untrusted templates."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flexserve.engine.chat_template import (
    CHATML_TEMPLATE,
    GEMMA3_TEMPLATE,
    ChatTemplate,
    validate_messages,
)
from flexserve.engine.gguf_file import GGUFFile
from flexserve.errors import TokenizerError

CONVERSATION = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?"},
]


def metadata_of(path: Path) -> dict[str, Any]:
    with GGUFFile.open(path) as gguf:
        return dict(gguf.metadata)


@pytest.fixture(scope="module")
def smollm2(smollm2_path: Path) -> ChatTemplate:
    return ChatTemplate.from_metadata(metadata_of(smollm2_path))


@pytest.fixture(scope="module")
def gemma3(gemma3_path: Path) -> ChatTemplate:
    return ChatTemplate.from_metadata(metadata_of(gemma3_path))


# --------------------------------------------------------------------------- real models
def test_smollm2_multi_turn(smollm2: ChatTemplate) -> None:
    assert smollm2.origin == "gguf"
    assert smollm2.render(CONVERSATION) == (
        "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
        "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_smollm2_adds_its_default_system_prompt(smollm2: ChatTemplate) -> None:
    rendered = smollm2.render(CONVERSATION[1:], add_generation_prompt=False)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
        "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
    )


def test_gemma3_gguf_has_no_template_so_the_builtin_gemma_format_is_used(
    gemma3: ChatTemplate,
) -> None:
    assert gemma3.origin == "builtin:gemma3"
    assert gemma3.render(CONVERSATION) == (
        "<bos><start_of_turn>user\nYou are a terse assistant.\n\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n4<end_of_turn>\n"
        "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma3_trims_turns_and_requires_alternation(gemma3: ChatTemplate) -> None:
    turns = [{"role": "user", "content": "  hi \n"}, {"role": "assistant", "content": "\nyo "}]
    assert gemma3.render(turns, add_generation_prompt=False) == (
        "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n"
    )
    with pytest.raises(TokenizerError, match="alternate"):
        gemma3.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])


def test_rendered_prompts_tokenize_with_single_special_tokens(
    smollm2_path: Path, gemma3_path: Path
) -> None:
    from flexserve.engine.tokenizer import Tokenizer

    for path, marker in ((smollm2_path, "<|im_start|>"), (gemma3_path, "<start_of_turn>")):
        metadata = metadata_of(path)
        prompt = ChatTemplate.from_metadata(metadata).render(CONVERSATION)
        tok = Tokenizer.from_metadata(metadata)
        ids = tok.encode_prompt(prompt)
        assert sum(tok.token_text(i) == marker for i in ids) == prompt.count(marker)
        assert tok.decode(ids, skip_special=False) == prompt


def test_renderings_agree_with_transformers(smollm2: ChatTemplate) -> None:
    chat_utils = pytest.importorskip("transformers.utils.chat_template_utils")
    for template in (smollm2, ChatTemplate(GEMMA3_TEMPLATE, bos_token="<bos>"),
                     ChatTemplate(CHATML_TEMPLATE)):
        for prompt in (True, False):
            theirs = chat_utils.render_jinja_template(
                [CONVERSATION], chat_template=template.source, add_generation_prompt=prompt,
                bos_token=template.bos_token, eos_token=template.eos_token,
            )[0][0]
            assert template.render(CONVERSATION, add_generation_prompt=prompt) == theirs


# ------------------------------------------------------------------------------ fallbacks
def test_fallback_is_chatml_without_template() -> None:
    template = ChatTemplate.from_metadata({"general.architecture": "llama"})
    assert template.origin == "builtin:chatml"
    assert template.render(CONVERSATION[:2]) == (
        "<|im_start|>system\nYou are a terse assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_bos_and_eos_texts_come_from_the_vocabulary() -> None:
    metadata = {
        "tokenizer.chat_template": "{{ bos_token }}|{{ eos_token }}",
        "tokenizer.ggml.tokens": ["<s>", "</s>", "x"],
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
    }
    assert ChatTemplate.from_metadata(metadata).render(CONVERSATION[:1]) == "<s>|</s>"


def test_non_string_template_in_metadata_is_refused() -> None:
    with pytest.raises(TokenizerError, match="must be a string"):
        ChatTemplate.from_metadata({"tokenizer.chat_template": ["{{ x }}"]})


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ("hello", "must be a list"),
        ([], "must not be empty"),
        (["hi"], r"messages\[0\] must be a dict"),
        ([{"role": "tool", "content": "x"}], r"messages\[0\]: role must be one of"),
        ([{"role": "user"}], "content must be a string, got NoneType"),
        ([{"role": "user", "content": ["part"]}], "content must be a string, got list"),
        ([{"role": "user", "content": "x", "name": "bob"}], "unsupported keys"),
        ([{"role": "user", "content": "ok"}, {"role": "robot", "content": "x"}], r"messages\[1\]"),
    ],
)
def test_invalid_messages_are_rejected(messages: Any, message: str) -> None:
    with pytest.raises(TokenizerError, match=message):
        validate_messages(messages)
    with pytest.raises(TokenizerError, match=message):
        ChatTemplate(CHATML_TEMPLATE).render(messages)


def test_template_sees_copies_of_the_messages() -> None:
    original = [{"role": "user", "content": "hi"}]
    clean = validate_messages(original)
    assert clean == original and clean[0] is not original[0]


# ---------------------------------------------------------------------- HF compatibility
COMPAT_TEMPLATE = """
{%- set ns = namespace(system='none') -%}
{%- for m in messages if m.role == 'system' %}{% set ns.system = m.content|trim %}{% endfor -%}
[{{ ns.system }}|{{ messages|selectattr('role', 'equalto', 'user')|list|length }}]
{% for m in messages %}
  {% if m.role == 'system' %}{% continue %}{% endif %}
  {% if m.content.startswith('And') %}{{ m.content.split(' ')[0]|upper }}{% break %}{% endif %}
  {{ loop.index }}:{{ m.role }}={{ m.content|tojson }}{{ ';' if not loop.last }}
{% endfor %}
{{ tools is none }}/{{ undefined_thing is defined }}/{{ strftime_now('%Y-%m-%d') }}
{{ (messages|map(attribute='content')|join(', '))|replace('+', ' plus ')|truncate(30) }}
{{ '-'.join(['a', 'b']) }}{{ 'x y'.split()|length }}{{ ' pad '.strip() }}
"""


def test_common_hf_template_constructs_work() -> None:
    template = ChatTemplate(COMPAT_TEMPLATE, clock=lambda: datetime(2025, 3, 14))
    # lstrip_blocks strips indentation before {% %} tags only, so "  " stays before {{ }}.
    assert template.render(CONVERSATION).split("\n") == [
        "[You are a terse assistant.|2]",
        '  2:user="What is 2+2?";',
        '  3:assistant="4";',
        "ANDTrue/False/2025-03-14",
        "You are a terse...",
        "a-b2pad",
    ]


def test_generation_tags_render_their_body() -> None:
    source = (
        "{% for m in messages %}{% generation %}[{{ m.content }}]{% endgeneration %}{% endfor %}"
    )
    expected = "[You are a terse assistant.][What is 2+2?]"
    assert ChatTemplate(source).render(CONVERSATION[:2]) == expected


def test_raise_exception_becomes_tokenizer_error() -> None:
    template = ChatTemplate("{{ raise_exception('only one user turn, please') }}")
    with pytest.raises(TokenizerError, match="rejected the conversation: only one user turn"):
        template.render(CONVERSATION)


def test_syntax_errors_are_tokenizer_errors() -> None:
    with pytest.raises(TokenizerError, match=r"syntax error \(line 2\)"):
        ChatTemplate("ok\n{% for m in messages %}")


# ------------------------------------------------------------------ malicious templates
REFUSED_AT_LOAD = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ messages.__class__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ self._TemplateReference__context }}",
    "{{ messages['__class__'] }}",
    "{% include 'secrets.txt' %}",
    "{% import 'macros.j2' as m %}",
    "{% extends 'base.j2' %}",
    "{{ 'x'|center(999999999) }}",
    "x" * (128 * 1024 + 1),
]


@pytest.mark.parametrize("source", REFUSED_AT_LOAD, ids=lambda s: s[:40])
def test_dangerous_templates_are_refused_before_running(source: str) -> None:
    with pytest.raises(TokenizerError):
        ChatTemplate(source)


REFUSED_AT_RENDER = [
    # dynamic attribute names get past the static check but not the sandbox
    "{{ (messages|attr('__cla' ~ 'ss__'))|attr('__subcl' ~ 'asses__') }}",
    "{{ messages[0]['__cla' ~ 'ss__'] }}",
    "{{ messages[0]|attr('__init__') }}",
    # CPU: nested loops, exponential recursion, recursive loops
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for m in messages %}{% for a in range(99999) %}{% for b in range(99999) %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% for x in [1] recursive %}{{ loop([1, 2]) }}{% endfor %}",
    "{% for x in (messages * 1000000) %}{% endfor %}",
    # memory: repetition, doubling, big integers, padding, printf widths
    "{{ 'x' * 10**10 }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(80) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(80) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(x=10) %}{% for i in range(64) %}{% set ns.x = ns.x * ns.x %}"
    "{% endfor %}",
    "{{ 2 ** 100000 }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ 'a'|indent(999999999) }}",
    "{{ messages|tojson(indent=999999999) }}",
    "{{ 'a'|replace('a', 'b' * 5000)|replace('b', 'c' * 5000) }}",
    "{{ messages[0].content.replace('', 'x' * 100000) }}",
    "{{ ('x' * 100000).join(range(99999)|map('string')) }}",
    "{% for i in range(100000) %}{{ 'y' * 100 }}{% endfor %}",
]


@pytest.mark.parametrize("source", REFUSED_AT_RENDER, ids=lambda s: s[:50])
def test_malicious_templates_fail_fast_with_tokenizer_error(source: str) -> None:
    template = ChatTemplate(source)
    start = time.perf_counter()
    with pytest.raises(TokenizerError):
        template.render(CONVERSATION)
    assert time.perf_counter() - start < 3.0


def test_output_cap_is_configurable() -> None:
    template = ChatTemplate(CHATML_TEMPLATE, max_output_chars=50)
    with pytest.raises(TokenizerError, match=r"(longer than|exceeds) 50"):
        template.render(CONVERSATION)


def test_errors_inside_templates_are_tokenizer_errors() -> None:
    for source in ("{{ 1 // 0 }}", "{{ messages[99].content.x.y }}", "{{ [].pop() }}",
                   "{{ messages.append(1) }}", "{{ undefined_fn() }}"):
        with pytest.raises(TokenizerError):
            ChatTemplate(source).render(CONVERSATION)
