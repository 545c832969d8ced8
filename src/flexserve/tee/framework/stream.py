"""A request that decodes across several TA invocations (``CMD_STREAM_BEGIN``/``NEXT``).

:class:`RequestStream` holds one request between invocations: its memory (pool or cache
check-out), its NPU hold, the prefilled KV cache and the engine's token stream. Each
:meth:`RequestStream.step` decodes up to ``n`` tokens and returns their text as a
:class:`StreamChunk`. The request ends exactly once: when its last chunk is produced (the
finish reason is set), on :meth:`RequestStream.cancel` (as on a normal end: the cache may keep
its layers and its KV cache; without a cache everything is scrubbed and handed back) or on an
error (what it loaded is released). Its :class:`~.trace.RequestTrace` then carries the
number of generated tokens, so the timing model can price it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from flexserve.engine.generate import GenerationEvent, Generator
from flexserve.engine.sampling import SamplingParams
from flexserve.errors import SecurityError
from flexserve.tee.framework.prefill import PrefilledModel, StreamedPrefill
from flexserve.tee.framework.request_memory import NpuHold, RequestMemory
from flexserve.tee.framework.trace import RequestTrace


@dataclass(frozen=True)
class StreamChunk:
    """The text of the tokens one invocation decoded (JSON in a memory reference).

    ``text`` may be empty while a multi-byte character or a stop string is pending;
    ``finish_reason`` is set on the last chunk only."""

    text: str
    completion_tokens: int  # tokens sampled so far (an end-of-turn token counts)
    prompt_tokens: int
    finish_reason: str | None = None

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> StreamChunk:
        return cls(**json.loads(data.decode("utf-8")))


class RequestStream:
    """One prefilled request, decoded a few tokens per invocation."""

    def __init__(self, trace: RequestTrace, memory: RequestMemory, npu: NpuHold,
                 prefill: StreamedPrefill, tokenizer: object, sampling: SamplingParams) -> None:
        self.trace, self.memory, self.npu = trace, memory, npu
        self._prefill = prefill
        self._prompt_ids = list(prefill.prompt_ids)
        self._max_tokens = sampling.max_tokens
        generator = Generator(PrefilledModel(prefill), tokenizer)  # type: ignore[arg-type]
        self._events: Iterator[GenerationEvent] = generator.stream(self._prompt_ids, sampling)
        self._token_ids: list[int] = []
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.ended = False

    def step(self, max_tokens: int) -> StreamChunk:
        """Decode up to ``max_tokens`` more tokens (the NPU held); the request ends with the
        chunk whose finish reason is set. Any failure ends it too (``failed``)."""
        texts: list[str] = []
        try:
            self.npu.acquire(self.trace)
            start = self.completion_tokens
            while self.finish_reason is None and self.completion_tokens - start < max_tokens:
                self._take(next(self._events), texts)
            if self.finish_reason is None and self.completion_tokens >= self._max_tokens:
                self._take(next(self._events), texts)  # the length finish: no more compute
        except SecurityError:
            self.fail()
            raise SecurityError() from None
        except BaseException:
            self.fail()
            raise
        if self.finish_reason is not None:
            self._end()
        return StreamChunk("".join(texts), self.completion_tokens, len(self._prompt_ids),
                           self.finish_reason)

    def pause(self) -> None:
        """Between invocations: the normal world gets its NPU back."""
        self.npu.release(self.trace)

    def cancel(self) -> None:
        """End now, as a finished request would (idempotent)."""
        if not self.ended:
            self._end()

    def fail(self) -> None:
        """End after an error: what the request loaded is scrubbed and released."""
        if self.ended:
            return
        self.ended = True
        try:
            self.npu.release(self.trace)
        finally:
            self.memory.failed()

    # ----- internals -----
    def _take(self, event: GenerationEvent, texts: list[str]) -> None:
        texts.append(event.text)
        if event.token_id is not None:
            self._token_ids.append(event.token_id)
        self.completion_tokens = event.n_generated_tokens
        self.trace.generated_tokens = event.n_generated_tokens
        self.finish_reason = event.finish_reason

    def _end(self) -> None:
        self.ended = True
        try:
            self.npu.release(self.trace)
        finally:
            self.memory.done(len(self._prompt_ids), self.trace, self._kv())

    def _kv(self) -> tuple[list[int], bytes] | None:
        """The token ids whose KV the request's cache holds, and that KV's bytes."""
        cache = self._prefill.cache
        if not cache.length:
            return None
        ids = (self._prompt_ids + self._token_ids)[:cache.length]
        return ids, cache.export_bytes(cache.length)
