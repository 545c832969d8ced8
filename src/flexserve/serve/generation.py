"""One request's life at the server: its events from the worker, host timings, pacing, cancel.

:class:`Generation` wraps ``worker.submit``: :meth:`start` waits for the first event (a
:class:`Failed` there becomes an :class:`APIError`, so the client gets a plain HTTP error),
:meth:`deltas` yields the text, :meth:`close` cancels the request in the worker if it has not
ended (the worker frees its secure resources within one decode step). With ``pace`` each
chunk is held back until the modeled device would have produced it: host time when the request
reached the device plus :attr:`Delta.device_elapsed_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from flexserve.serve.api_errors import APIError, from_failure
from flexserve.serve.metrics import ServerMetrics
from flexserve.serve.protocol import (
    Delta,
    Event,
    Failed,
    FailureKind,
    Finished,
    Started,
    WorkerStatus,
    WorkRequest,
)


class Worker(Protocol):
    """What the server needs of the device worker (flexserve.serve.worker_client)."""

    def submit(self, request: WorkRequest) -> AsyncIterator[Event]: ...
    async def cancel(self, request_id: str) -> None: ...
    def status(self) -> WorkerStatus: ...


class StreamFailed(Exception):
    """The worker failed a request after it had started (e.g. the worker died)."""

    def __init__(self, error: APIError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class HostClock:
    """Host (perf_counter) times of one request at the server."""

    received_s: float
    device_start_s: float | None = None  # when it reached the device (after the queue)
    first_token_s: float | None = None
    last_token_s: float | None = None
    ended_s: float | None = None
    queue_wait_s: float = 0.0


class Generation:
    def __init__(self, worker: Worker, request: WorkRequest, metrics: ServerMetrics,
                 pace: bool = False) -> None:
        self.request = request
        self._worker = worker
        self._metrics = metrics
        self._pace = pace
        self._events = worker.submit(request)
        self.clock = HostClock(received_s=time.perf_counter())
        self.finished: Finished | None = None
        self.completion_tokens = 0
        self._last_device_s = 0.0
        self._ended = False

    @property
    def request_id(self) -> str:
        return self.request.request_id

    async def start(self) -> Started:
        """Wait until the device has the prompt; a failure before that raises APIError."""
        event = await self._next_event()
        if isinstance(event, Failed):
            self._end()
            raise from_failure(event)
        if not isinstance(event, Started):
            self._end()
            raise APIError(500, "the worker answered out of order", "server_error")
        self.clock.queue_wait_s = event.queue_wait_host_s
        self.clock.device_start_s = self.clock.received_s + event.queue_wait_host_s
        return event

    async def deltas(self) -> AsyncIterator[Delta]:
        """The text as it comes; ends after Finished, raises StreamFailed on Failed."""
        while not self._ended:
            event = await self._next_event()
            if isinstance(event, Delta):
                self._record(event)
                await self._hold_back(event)
                yield event
            elif isinstance(event, Finished):
                self.finished = event
                self._end()
                self._metrics.ttft_s.labels(clock="device").observe(event.timings.ttft_device_s)
            elif isinstance(event, Failed):
                self._end()
                raise StreamFailed(from_failure(event))

    async def text(self) -> str:
        """All the text (non-streaming responses)."""
        return "".join([delta.text async for delta in self.deltas()])

    async def close(self) -> None:
        """Cancel in the worker unless the request already ended; idempotent."""
        if not self._ended:
            self._end()
            await self._worker.cancel(self.request_id)
        closer = getattr(self._events, "aclose", None)
        if closer is not None:
            await closer()

    async def _next_event(self) -> Event:
        try:
            return await anext(self._events)
        except StopAsyncIteration:
            self._end()
            return Failed(self.request_id, FailureKind.INTERNAL,
                          "the worker ended the request without finishing it")

    def _end(self) -> None:
        self._ended = True
        self.clock.ended_s = time.perf_counter()

    def _record(self, delta: Delta) -> None:
        new_tokens = delta.completion_tokens - self.completion_tokens
        if new_tokens <= 0:
            return
        now_s = time.perf_counter()
        clock = self.clock
        if clock.first_token_s is None:
            clock.first_token_s = now_s
            self._metrics.ttft_s.labels(clock="host").observe(now_s - clock.received_s)
        elif clock.last_token_s is not None:
            self._observe_gaps("host", (now_s - clock.last_token_s) / new_tokens, new_tokens)
            device_gap_s = (delta.device_elapsed_s - self._last_device_s) / new_tokens
            self._observe_gaps("device", device_gap_s, new_tokens)
        clock.last_token_s = now_s
        self._last_device_s = delta.device_elapsed_s
        self.completion_tokens = delta.completion_tokens

    def _observe_gaps(self, clock: str, gap_s: float, count: int) -> None:
        histogram = self._metrics.inter_token_s.labels(clock=clock)
        for _ in range(count):
            histogram.observe(max(gap_s, 0.0))

    async def _hold_back(self, delta: Delta) -> None:
        if not self._pace or self.clock.device_start_s is None:
            return
        delay_s = self.clock.device_start_s + delta.device_elapsed_s - time.perf_counter()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    def extension(self) -> dict[str, Any]:
        """The ``flexserve`` field of a response: host and modeled device timings."""
        clock = self.clock
        ended_s = clock.ended_s if clock.ended_s is not None else time.perf_counter()
        host: dict[str, Any] = {
            "ttft_s": _since(clock.first_token_s, clock.received_s),
            "queue_wait_s": clock.queue_wait_s,
            "total_s": ended_s - clock.received_s,
        }
        result: dict[str, Any] = {"request_id": self.request_id, "paced": self._pace,
                                  "host": host}
        if self.finished is not None:
            timings = self.finished.timings
            host["worker_ttft_s"] = timings.ttft_host_s
            host["decode_tokens_per_s"] = timings.decode_tokens_per_s_host
            result["device"] = {
                "ttft_s": timings.ttft_device_s,
                "decode_tokens_per_s": timings.decode_tokens_per_s_device,
                "breakdown_s": dict(timings.breakdown_device_s),
            }
            result["system"] = timings.system
            result["profile"] = timings.profile
        return result


def _since(later_s: float | None, earlier_s: float) -> float | None:
    return None if later_s is None else later_s - earlier_s
