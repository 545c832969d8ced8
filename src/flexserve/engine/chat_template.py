"""Chat templates: turning a conversation into the prompt text a model was trained on.

The template is the GGUF's ``tokenizer.chat_template`` (a Hugging Face style Jinja2 template),
rendered in the hardened sandbox of :mod:`chat_sandbox` with the variables HF templates
expect: ``messages``, ``add_generation_prompt``, ``bos_token``, ``eos_token``,
``raise_exception``, ``strftime_now``, and ``tools``/``documents`` (always None here).

When the GGUF has no template we fall back to a built-in one chosen by
``general.architecture``: Gemma 3's turn format for ``gemma3`` (its GGUFs often ship without
a template, and ChatML would be the wrong format for it), ChatML otherwise.

The rendered text contains the template's special tokens as text (``<|im_start|>``,
``<bos>``...); encode it with ``Tokenizer.encode_prompt`` (specials parsed, no double BOS).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from jinja2 import TemplateError, TemplateSyntaxError

from flexserve.engine.chat_sandbox import (
    DEFAULT_MAX_OUTPUT_CHARS,
    DEFAULT_STEP_BUDGET,
    ChatSandbox,
    TemplateLimitError,
    render_limited,
)
from flexserve.errors import TokenizerError

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 10_000
STEPS_PER_INPUT_CHAR = 4

CHATML_TEMPLATE = r"""
{%- for message in messages -%}
{{- '<|im_start|>' ~ message['role'] ~ '\n' ~ message['content'] ~ '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""

# Gemma 3: <bos>, then "<start_of_turn>{user|model}\n{content, trimmed}<end_of_turn>\n" per
# turn; a leading system message is prepended to the first user turn, followed by a blank line.
GEMMA3_TEMPLATE = r"""
{{- bos_token -}}
{%- set ns = namespace(prefix='', turns=messages) -%}
{%- if messages and messages[0]['role'] == 'system' -%}
  {%- set ns.prefix = messages[0]['content'] ~ '\n\n' -%}
  {%- set ns.turns = messages[1:] -%}
{%- endif -%}
{%- for message in ns.turns -%}
  {%- if message['role'] != ('user' if loop.index0 is even else 'assistant') -%}
    {{- raise_exception('Gemma turns must alternate user/assistant, starting with user') -}}
  {%- endif -%}
  {{- '<start_of_turn>' ~ ('model' if message['role'] == 'assistant' else 'user') ~ '\n' -}}
  {{- ns.prefix if loop.first else '' -}}
  {{- message['content'] | trim -}}
  {{- '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}
"""
BUILTIN_BY_ARCHITECTURE = {"gemma3": GEMMA3_TEMPLATE}


class _TemplateRaised(Exception):
    """raise_exception() was called by the template."""


def _raise_exception(message: Any = "") -> NoReturn:
    raise _TemplateRaised(str(message))


class ChatTemplate:
    """A compiled, sandboxed chat template."""

    def __init__(
        self,
        source: str,
        *,
        bos_token: str = "",
        eos_token: str = "",
        origin: str = "custom",
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        step_budget: int = DEFAULT_STEP_BUDGET,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        if not isinstance(source, str):
            raise TokenizerError(f"chat template must be a string, got {type(source).__name__}")
        self.source = source
        self.origin = origin
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.max_output_chars = max_output_chars
        self.step_budget = step_budget
        self._clock = clock
        self._template = _compile(source)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any], **options: Any) -> ChatTemplate:
        """The GGUF's template, or the built-in fallback for its architecture."""
        source = metadata.get("tokenizer.chat_template")
        origin = "gguf"
        if source is None:
            arch = metadata.get("general.architecture")
            source = BUILTIN_BY_ARCHITECTURE.get(arch, CHATML_TEMPLATE)
            origin = f"builtin:{arch if arch in BUILTIN_BY_ARCHITECTURE else 'chatml'}"
        return cls(
            source,
            bos_token=_special_text(metadata, "bos_token_id"),
            eos_token=_special_text(metadata, "eos_token_id"),
            origin=origin,
            **options,
        )

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for ``messages``; raises TokenizerError on bad input or template."""
        clean = validate_messages(messages)
        n_chars = sum(len(m["content"]) for m in clean)
        if n_chars > self.max_output_chars:
            raise TokenizerError(f"messages hold {n_chars} characters, over the prompt cap")
        variables = {
            "messages": clean,
            "add_generation_prompt": bool(add_generation_prompt),
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "raise_exception": _raise_exception,
            "strftime_now": self._strftime_now,
            "tools": None,
            "documents": None,
        }
        steps = self.step_budget + STEPS_PER_INPUT_CHAR * n_chars
        try:
            return render_limited(self._template, variables, self.max_output_chars, steps)
        except _TemplateRaised as exc:
            raise TokenizerError(f"chat template rejected the conversation: {exc}") from None
        except TemplateLimitError as exc:
            raise TokenizerError(f"chat template refused: {exc}") from None
        except (TemplateError, RecursionError, MemoryError) as exc:
            raise TokenizerError(f"chat template failed: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # untrusted code: any failure is a template failure
            raise TokenizerError(f"chat template failed: {type(exc).__name__}: {exc}") from None

    def _strftime_now(self, fmt: str) -> str:
        return self._clock().strftime(str(fmt)[:64])

    def __repr__(self) -> str:
        return f"ChatTemplate(origin={self.origin!r}, {len(self.source)} chars)"


def validate_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Plain copies of the messages, after checking roles and contents."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise TokenizerError("messages must be a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise TokenizerError("messages must not be empty")
    if len(messages) > MAX_MESSAGES:
        raise TokenizerError(f"{len(messages)} messages is more than {MAX_MESSAGES}")
    return [_validate_message(i, m) for i, m in enumerate(messages)]


def _validate_message(index: int, message: Any) -> dict[str, str]:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise TokenizerError(f"{where} must be a dict, got {type(message).__name__}")
    extra = set(message) - {"role", "content"}
    if extra:
        raise TokenizerError(f"{where} has unsupported keys {sorted(map(str, extra))}")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise TokenizerError(f"{where}: role must be one of {'/'.join(ROLES)}, got {role!r}")
    if not isinstance(content, str):
        kind = type(content).__name__
        raise TokenizerError(f"{where}: content must be a string, got {kind}")
    return {"role": role, "content": content}


def _compile(source: str) -> Any:
    try:
        return ChatSandbox().compile_checked(source)
    except TemplateSyntaxError as exc:
        raise TokenizerError(f"chat template syntax error (line {exc.lineno}): {exc}") from None
    except TemplateLimitError as exc:
        raise TokenizerError(f"chat template refused: {exc}") from None
    except (TemplateError, RecursionError) as exc:
        raise TokenizerError(f"chat template cannot be compiled: {exc}") from None


def _special_text(metadata: Mapping[str, Any], key: str) -> str:
    tokens = metadata.get("tokenizer.ggml.tokens")
    token_id = metadata.get(f"tokenizer.ggml.{key}")
    if not (isinstance(token_id, int) and isinstance(tokens, list | tuple)):
        return ""
    if 0 <= token_id < len(tokens) and isinstance(tokens[token_id], str):
        return tokens[token_id]
    return ""
