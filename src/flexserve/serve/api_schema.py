"""The request bodies of the OpenAI API this server accepts, as strict pydantic models.

The models are the OpenAPI document's schemas too, so what the document promises is what the
server checks: types are strict (``"1"`` is not an integer), ranges follow OpenAI's
(temperature in [0, 2], top_p in (0, 1]). Unknown fields are accepted and ignored, as
OpenAI-compatible servers do; features this server does not have (n > 1, logprobs, tools,
penalties other than repetition_penalty) are refused with a 400 rather than silently dropped.
``top_k``, ``min_p`` and ``repetition_penalty`` are extensions (the engine's sampler has them).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flexserve.serve.api_errors import APIError

MAX_SEED = 2**63 - 1
MAX_STOP_STRINGS = 4
OPENAI_DEFAULT_TEMPERATURE = 1.0


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


def _utf8(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list | tuple):
        return all(_utf8(item) for item in value)
    if isinstance(value, BaseModel):
        return all(_utf8(getattr(value, name)) for name in type(value).model_fields)
    return True


class StreamOptions(_Strict):
    include_usage: bool = False


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessageIn(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class _GenerationRequest(_Strict):
    """Fields chat and completions share."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    stop: str | list[str] | None = Field(None, max_length=MAX_STOP_STRINGS)
    n: int | None = Field(None, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(None, ge=0, le=0)
    frequency_penalty: float | None = Field(None, ge=0, le=0)
    user: str | None = None
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, lt=1)
    repetition_penalty: float | None = Field(None, ge=0.01, le=10)

    @model_validator(mode="after")
    def _encodable(self) -> _GenerationRequest:
        """Text must be valid Unicode (JSON can carry lone surrogates; UTF-8 cannot)."""
        for name in type(self).model_fields:
            if not _utf8(getattr(self, name)):
                raise APIError(400, f"{name} is not valid Unicode text (a lone surrogate)",
                               param=name)
        return self

    def completion_limit(self) -> int | None:
        return self.max_tokens

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def sampling(self, default_max_tokens: int) -> dict[str, Any]:
        """The worker's SamplingParams fields (OpenAI defaults where the client said nothing)."""
        limit = self.completion_limit()
        temperature = (self.temperature if self.temperature is not None
                       else OPENAI_DEFAULT_TEMPERATURE)
        sampling: dict[str, Any] = {
            "max_tokens": limit if limit is not None else default_max_tokens,
            "temperature": temperature,
            "top_p": self.top_p if self.top_p is not None else 1.0,
            "stop": stop_strings(self.stop),
            "seed": self.seed,
        }
        for extension in ("top_k", "min_p", "repetition_penalty"):
            value = getattr(self, extension)
            if value is not None:
                sampling[extension] = value
        return sampling


class ResponseFormat(_Strict):
    type: Literal["text"]


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: Literal[False] | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = Field(None, max_length=0)

    def completion_limit(self) -> int | None:
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str] = Field(min_length=1)
    echo: bool = False
    suffix: None = None
    best_of: int | None = Field(None, ge=1, le=1)
    logprobs: None = None

    def prompt_text(self) -> str:
        """The one prompt (a list must hold exactly one string)."""
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise APIError(400, "prompt must be one string (batches are not supported)",
                           param="prompt")
        return self.prompt[0]


def stop_strings(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    strings = [stop] if isinstance(stop, str) else list(stop)
    if any(not text for text in strings):
        raise APIError(400, "stop strings must be non-empty", param="stop")
    return strings
