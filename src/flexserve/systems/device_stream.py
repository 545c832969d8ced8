"""A request streaming on a :class:`~flexserve.systems.session.DeviceSession`, on its clock.

The TA decodes a few tokens per invocation (``CMD_STREAM_NEXT``); each chunk is stamped with
when the modeled device would have produced it, from the request's start: the first token
at the TTFT of the request's trace (the task graph of :mod:`.schedule`), token ``k`` after
``k - 1`` modeled decode steps more (``pricing.decode_s``). The session's clock advances by
the same amounts, so requests of different models that interleave add up on one device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from flexserve.systems import pricing
from flexserve.systems.device import FrameworkClient
from flexserve.systems.schedule import SystemTiming, time_request
from flexserve.tee.framework import GenerateAnswer, StreamChunk
from flexserve.tee.framework.trace import RequestTrace

if TYPE_CHECKING:
    from flexserve.systems.session import DeviceSession, SessionReply

FINISH_CANCELLED = "cancelled"


@dataclass(frozen=True)
class TimedChunk:
    """A chunk of a stream and when the modeled device produced it."""

    text: str
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str | None
    device_elapsed_s: float  # from the request's start on the device clock


class DeviceStream:
    """One request between its prefill and its end. Iterating yields :attr:`first`, then
    chunks of ``step_tokens``; :attr:`reply` is set once it ended (finished or cancelled)."""

    def __init__(self, session: DeviceSession, client: FrameworkClient, trace: RequestTrace,
                 first: StreamChunk, step_tokens: int) -> None:
        self.session, self.client, self.trace = session, client, trace
        self.step_tokens = step_tokens
        self.ttft_timing: SystemTiming = time_request(trace, session.system, session.profile,
                                                      decode_tokens=1)
        self._decoded = 0  # tokens after the first, priced so far
        self._decode_s = 0.0
        self._texts: list[str] = []
        self.reply: SessionReply | None = None
        session.clock_s += self.ttft_timing.ttft_s
        self.first = self._timed(first)

    @property
    def ended(self) -> bool:
        return self.reply is not None

    @property
    def ttft_s(self) -> float:
        return self.ttft_timing.ttft_s

    def __iter__(self) -> Iterator[TimedChunk]:
        yield self.first
        while not self.ended:
            yield self.step()

    def step(self, max_tokens: int | None = None) -> TimedChunk:
        """Decode up to ``max_tokens`` (default ``step_tokens``) more tokens."""
        chunk = self.session.device_call(
            lambda: self.client.stream_next(max_tokens or self.step_tokens), self._abandon)
        return self._timed(chunk)

    def cancel(self) -> None:
        """End the request now (its secure resources are freed in the TA); idempotent."""
        if self.ended:
            return
        self.session.device_call(self.client.stream_cancel, self._abandon)
        self._end(FINISH_CANCELLED, self.trace.prompt_tokens, self.trace.generated_tokens)

    # ----- internals -----
    def _timed(self, chunk: StreamChunk) -> TimedChunk:
        decoded = max(0, chunk.completion_tokens - 1)
        more_s = pricing.decode_s(self._shape(), chunk.prompt_tokens + self._decoded,
                                  decoded - self._decoded, self.session.system,
                                  self.session.profile)
        self._decoded, self._decode_s = decoded, self._decode_s + more_s
        self.session.clock_s += more_s
        self._texts.append(chunk.text)
        if chunk.finish_reason is not None:
            self._end(chunk.finish_reason, chunk.prompt_tokens, chunk.completion_tokens)
        return TimedChunk(chunk.text, chunk.completion_tokens, chunk.prompt_tokens,
                          chunk.finish_reason, self.ttft_s + self._decode_s)

    def _end(self, finish_reason: str, prompt_tokens: int, completion_tokens: int) -> None:
        from flexserve.systems.session import SessionReply

        rate = pricing.decode_tokens_per_s(self._shape(), prompt_tokens, completion_tokens,
                                           self.session.system, self.session.profile)
        answer = GenerateAnswer("".join(self._texts), finish_reason, prompt_tokens,
                                completion_tokens)
        self.reply = SessionReply(answer, self.trace,
                                  replace(self.ttft_timing, decode_tokens_per_s=rate))
        self.session.stream_ended(self)

    def _abandon(self) -> None:
        """The TA ended the request on an error: nothing of it is left to cancel."""
        if not self.ended:
            self._end("error", self.trace.prompt_tokens, self.trace.generated_tokens)

    def _shape(self):
        assert self.trace.shape is not None
        return self.trace.shape
