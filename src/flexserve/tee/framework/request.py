"""The wire format of a generation request and its answer (JSON in memory references).

The prompt is user data: it crosses into the secure world as bytes, and tokenization and
the chat template run inside the TA. A request carries either ``prompt`` (text, wrapped in the
model's chat template as one user turn unless ``raw``) or ``messages`` (a conversation of
``{role, content}`` turns, rendered with the template). Sampling fields map onto
:class:`~flexserve.engine.sampling.SamplingParams` (validated there). Anything malformed is a
:class:`~flexserve.errors.ConfigError`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from flexserve.engine.chat_template import validate_messages
from flexserve.engine.sampling import SamplingParams
from flexserve.errors import ConfigError, TokenizerError

MAX_REQUEST_BYTES = 1 << 20
_FIELDS = frozenset({"prompt", "raw", "system", "sampling", "messages", "keep_kv"})


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str = ""
    raw: bool = False
    system: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    #: a chat conversation instead of ``prompt``: roles system (first turn only), user and
    #: assistant; the last turn is the user's
    messages: tuple[dict[str, str], ...] | None = None
    #: reuse this session's kept KV cache for a matching prompt prefix, and keep this
    #: request's for the next turn (docs/cache.md); a client serving unrelated users (the
    #: HTTP server) says False, so one user's tokens never shape another's text or timing
    keep_kv: bool = True

    def encode(self) -> bytes:
        body = asdict(self)
        body["messages"] = list(self.messages) if self.messages is not None else None
        return json.dumps(body).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> GenerateRequest:
        if len(data) > MAX_REQUEST_BYTES:
            raise ConfigError("request too large")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError("malformed generation request") from None
        if not isinstance(body, dict) or set(body) - _FIELDS:
            raise ConfigError("malformed generation request")
        messages = body.get("messages")
        request = cls(prompt=_text(body.get("prompt", ""), "prompt"),
                      raw=_flag(body.get("raw", False)),
                      system=_optional_text(body.get("system"), "system"),
                      sampling=_mapping(body.get("sampling", {})),
                      messages=None if messages is None else checked_messages(messages),
                      keep_kv=_flag(body.get("keep_kv", True)))
        request.validate()
        return request

    def validate(self) -> None:
        """Refuse an inconsistent request (also usable before it is sent)."""
        if self.messages is not None:
            checked_messages(self.messages)
            if self.prompt or self.raw or self.system is not None:
                raise ConfigError("give either messages or prompt/raw/system, not both")
        self.sampling_params()

    def sampling_params(self) -> SamplingParams:
        values = dict(self.sampling)
        if "stop" in values:
            stop = values["stop"]
            if isinstance(stop, str) or not isinstance(stop, list | tuple):
                raise ConfigError("stop must be a list of strings")
            values["stop"] = tuple(stop)
        try:
            return SamplingParams(**values)
        except TypeError:
            raise ConfigError("unknown or ill-typed sampling field") from None

    def conversation(self) -> list[dict[str, str]]:
        """The turns the chat template renders."""
        if self.messages is not None:
            return [dict(m) for m in self.messages]
        turns = [{"role": "system", "content": self.system}] if self.system else []
        return [*turns, {"role": "user", "content": self.prompt}]


def checked_messages(messages: Any) -> tuple[dict[str, str], ...]:
    """Plain copies of a conversation's turns, strictly checked (``ConfigError``)."""
    if not isinstance(messages, list | tuple):
        raise ConfigError("messages must be a list of {role, content} objects")
    try:
        clean = validate_messages(list(messages))
    except TokenizerError as error:
        raise ConfigError(str(error)) from None
    if any(m["role"] == "system" for m in clean[1:]):
        raise ConfigError("a system message may only be the first turn")
    if clean[-1]["role"] != "user":
        raise ConfigError("the last message must be the user's")
    return tuple(clean)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string")
    return value


def _optional_text(value: Any, name: str) -> str | None:
    return None if value is None else _text(value, name)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError("raw must be true or false")
    return value


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError("sampling must be an object")
    return dict(value)


@dataclass(frozen=True)
class GenerateAnswer:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> GenerateAnswer:
        return cls(**json.loads(data.decode("utf-8")))


def sampling_dict(params: SamplingParams) -> dict[str, Any]:
    values = asdict(params)
    values["stop"] = list(params.stop)
    return values
