"""One request inside the device worker: checked, begun on the device, stepped, timed.

:class:`Job` turns a :class:`WorkRequest` into a framework :class:`GenerateRequest` (checked
here too, so a bad request gets a precise message; the TA checks it again, and only the TA's
answer counts), runs it as a :class:`~flexserve.systems.device_stream.DeviceStream` and
produces the protocol's events. Every failure becomes one :class:`Failed` whose message is
safe to show a client (:func:`failure_of`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from flexserve.errors import (
    ConfigError,
    ContextOverflowError,
    FlexServeError,
    ModelError,
    SecurityError,
    TokenizerError,
)
from flexserve.serve.protocol import (
    Delta,
    Event,
    Failed,
    FailureKind,
    Finished,
    Started,
    Timings,
    WorkRequest,
)
from flexserve.systems.device_stream import DeviceStream, TimedChunk
from flexserve.systems.session import DeviceSession
from flexserve.tee.framework import GenerateRequest


@dataclass
class Job:
    request: WorkRequest
    received_s: float = field(default_factory=time.perf_counter)
    stream: DeviceStream | None = None
    begun_s: float = 0.0
    first_chunk_s: float = 0.0

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def begin(self, session: DeviceSession, step_tokens: int) -> list[Event]:
        """Prefill on the device: Started and the first Delta (or the end), or one Failed."""
        self.begun_s = time.perf_counter()
        try:
            request = framework_request(self.request)
            self.stream = session.stream(self.request.model, request, step_tokens)
        except Exception as error:  # every failure is an event; the worker carries on
            return [failure_of(self.request_id, error)]
        self.first_chunk_s = time.perf_counter()
        events: list[Event] = [Started(self.request_id, self.begun_s - self.received_s)]
        return events + self._chunk_events(self.stream.first)

    def step(self) -> list[Event]:
        """One decode step: a Delta, then Finished once the request is done."""
        assert self.stream is not None
        try:
            return self._chunk_events(self.stream.step())
        except Exception as error:
            return [failure_of(self.request_id, error)]

    def cancel(self) -> Failed:
        """End now (the TA frees or checks in the request's frames); the Failed to send."""
        if self.stream is not None:
            try:
                self.stream.cancel()
            except Exception as error:
                return failure_of(self.request_id, error)
        return Failed(self.request_id, FailureKind.CANCELLED, "the request was cancelled")

    @property
    def ended(self) -> bool:
        return self.stream is not None and self.stream.ended

    # ----- internals -----
    def _chunk_events(self, chunk: TimedChunk) -> list[Event]:
        events: list[Event] = [Delta(self.request_id, chunk.text, chunk.completion_tokens,
                                     chunk.device_elapsed_s)]
        if chunk.finish_reason is not None:
            events.append(self._finished(chunk))
        return events

    def _finished(self, chunk: TimedChunk) -> Finished:
        assert self.stream is not None and self.stream.reply is not None
        session, timing = self.stream.session, self.stream.reply.timing
        decode_host_s = time.perf_counter() - self.first_chunk_s
        decoded = max(0, chunk.completion_tokens - 1)
        timings = Timings(
            ttft_host_s=self.first_chunk_s - self.begun_s,
            decode_tokens_per_s_host=decoded / decode_host_s if decode_host_s > 0 else 0.0,
            ttft_device_s=timing.ttft_s,
            decode_tokens_per_s_device=timing.decode_tokens_per_s,
            breakdown_device_s=dict(timing.breakdown),
            system=session.system.name, profile=session.profile.name)
        return Finished(self.request_id, chunk.finish_reason or "stop", chunk.prompt_tokens,
                        chunk.completion_tokens, timings)


def framework_request(request: WorkRequest) -> GenerateRequest:
    """The TA's request for ``request``; a ``ConfigError`` says what is wrong with it.

    The worker serves unrelated clients over one framework session per model, so no request
    reuses or keeps a KV cache (``keep_kv=False``): one user's prompt never shapes another's
    text or time to first token."""
    if request.messages is not None:
        messages = tuple({"role": m.role, "content": m.content} for m in request.messages)
        generate = GenerateRequest(messages=messages, sampling=dict(request.sampling),
                                   keep_kv=False)
    else:
        if request.prompt is None:
            raise ConfigError("a request needs a prompt or messages")
        generate = GenerateRequest(request.prompt, raw=True, sampling=dict(request.sampling),
                                   keep_kv=False)
    generate.validate()
    return generate


def failure_of(request_id: str, error: BaseException) -> Failed:
    """The Failed event for ``error``; the message never carries secret material."""
    if isinstance(error, SecurityError):
        return Failed(request_id, FailureKind.SECURITY, "an integrity check failed")
    if isinstance(error, ContextOverflowError):
        return Failed(request_id, FailureKind.CONTEXT, str(error))
    if isinstance(error, ModelError):
        return Failed(request_id, FailureKind.NOT_FOUND, str(error))
    if isinstance(error, ConfigError | TokenizerError):
        return Failed(request_id, FailureKind.BAD_REQUEST, str(error))
    kind = type(error).__name__
    print(f"flexserve worker: request {request_id} failed: {kind}", file=sys.stderr)
    message = "the device failed the request" if isinstance(error, FlexServeError) \
        else "internal error in the device worker"
    return Failed(request_id, FailureKind.INTERNAL, message)
