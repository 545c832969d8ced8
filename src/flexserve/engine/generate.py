"""Generation: prefill the prompt, then decode token by token, streaming text.

:class:`Generator` yields one :class:`GenerationEvent` per sampled token (with its safe text
delta) and a final event with the finish reason: ``"stop"`` (an end-of-turn token or a stop
string; neither is emitted as text) or ``"length"`` (``max_tokens`` reached).
:class:`GreedyStepper` is the bare prefill/step loop used by benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from flexserve.engine.kv_cache import KVCache
from flexserve.engine.model import Transformer
from flexserve.engine.sampling import Sampler, SamplingParams
from flexserve.engine.stops import StopStringFilter
from flexserve.errors import ConfigError, ContextOverflowError

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


class TokenizerLike(Protocol):
    stop_token_ids: frozenset[int]

    def stream_decoder(self) -> Any: ...


@dataclass(frozen=True)
class GenerationEvent:
    """One step of a stream: a token and its text, or the end (``finish_reason`` set)."""

    token_id: int | None
    text: str
    finish_reason: str | None
    n_prompt_tokens: int
    n_generated_tokens: int


@dataclass(frozen=True)
class GenerationResult:
    """A whole generation. ``token_ids`` excludes a final end-of-turn token."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str
    n_prompt_tokens: int
    n_generated_tokens: int  # every sampled token, including an end-of-turn token


def check_fits(n_prompt_tokens: int, max_tokens: int, context_length: int) -> None:
    """Refuse a request whose prompt plus ``max_tokens`` exceeds the context."""
    if n_prompt_tokens == 0:
        raise ConfigError("the prompt has no tokens")
    if n_prompt_tokens + max_tokens > context_length:
        raise ContextOverflowError(
            f"prompt of {n_prompt_tokens} tokens plus max_tokens {max_tokens} exceeds the "
            f"context of {context_length} tokens"
        )


class _Run:
    """State of one streaming request."""

    def __init__(self, gen: Generator, prompt_ids: list[int], params: SamplingParams) -> None:
        self.model = gen.model
        self.stop_ids = frozenset(gen.tokenizer.stop_token_ids)
        self.decoder = gen.tokenizer.stream_decoder()
        self.stops = StopStringFilter(params.stop)
        self.sampler = Sampler(params)
        self.params = params
        self.history = list(prompt_ids)
        self.n_prompt = len(prompt_ids)
        self.n_generated = 0

    def event(self, token_id: int | None, text: str, finish: str | None = None) -> GenerationEvent:
        return GenerationEvent(token_id, text, finish, self.n_prompt, self.n_generated)

    def finish(self, reason: str) -> GenerationEvent:
        result = self.stops.push(_decoder_tail(self.decoder))
        text = result.text if result.stopped else result.text + self.stops.flush()
        return self.event(None, text, FINISH_STOP if result.stopped else reason)

    def events(self, cache: KVCache) -> Iterator[GenerationEvent]:
        logits = self.model.forward(self.history, cache, last_only=True)[-1]
        while True:
            token = self.sampler.sample(logits, self.history)
            self.n_generated += 1
            if token in self.stop_ids:
                yield self.finish(FINISH_STOP)
                return
            self.history.append(token)
            result = self.stops.push(self.decoder.push(token))
            if result.stopped:
                yield self.event(None, result.text, FINISH_STOP)
                return
            yield self.event(token, result.text)
            if self.n_generated >= self.params.max_tokens:
                yield self.finish(FINISH_LENGTH)
                return
            logits = self.model.forward([token], cache, last_only=True)[-1]


def _decoder_tail(decoder: Any) -> str:
    finish = getattr(decoder, "finish", None)
    return finish() if callable(finish) else ""


class Generator:
    """Streams completions of token prompts from a fully installed transformer."""

    def __init__(self, model: Transformer, tokenizer: TokenizerLike) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def stream(
        self, prompt_ids: Sequence[int], params: SamplingParams | None = None
    ) -> Iterator[GenerationEvent]:
        """Validate, then lazily prefill and decode; the last event has a finish reason."""
        params = params or SamplingParams()
        prompt = [int(t) for t in prompt_ids]
        check_fits(len(prompt), params.max_tokens, self.model.config.context_length)
        cache = self.model.new_cache(len(prompt) + params.max_tokens)
        return _Run(self, prompt, params).events(cache)

    def generate(
        self, prompt_ids: Sequence[int], params: SamplingParams | None = None
    ) -> GenerationResult:
        """Run :meth:`stream` to the end and collect the result."""
        texts: list[str] = []
        token_ids: list[int] = []
        last: GenerationEvent | None = None
        for last in self.stream(prompt_ids, params):
            texts.append(last.text)
            if last.token_id is not None:
                token_ids.append(last.token_id)
        assert last is not None and last.finish_reason is not None
        return GenerationResult("".join(texts), tuple(token_ids), last.finish_reason,
                                last.n_prompt_tokens, last.n_generated_tokens)


class GreedyStepper:
    """Bare greedy decoding without stop conditions: ``prefill`` once, then ``step``."""

    def __init__(self, model: Transformer, max_context_tokens: int) -> None:
        self.model = model
        self.cache = model.new_cache(min(max_context_tokens, model.config.context_length))

    def prefill(self, prompt_ids: Sequence[int]) -> int:
        self.cache.reset()
        return self._argmax(self.model.forward(list(prompt_ids), self.cache, last_only=True))

    def step(self, token_id: int) -> int:
        return self._argmax(self.model.forward([token_id], self.cache, last_only=True))

    @staticmethod
    def _argmax(logits: torch.Tensor) -> int:
        return int(torch.argmax(logits[-1]))
