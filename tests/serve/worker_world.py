"""Helpers of the device worker tests: a sealed FLEXSERVE_HOME, an event loop kept across a
module's tests, and collecting a request's events."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from flexserve.serve.protocol import (
    Delta,
    Event,
    Failed,
    Finished,
    Started,
    WorkerStatus,
    WorkRequest,
)

T = TypeVar("T")
READY_TIMEOUT_S = 240.0


class LoopRunner:
    """One event loop for a module's tests (a DeviceWorker reads its pipe on one loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


async def collect(worker, request: WorkRequest) -> list[Event]:
    return [event async for event in worker.submit(request)]


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def ended_ok(events: list[Event]) -> bool:
    return isinstance(events[0], Started) and isinstance(events[-1], Finished)


def only_failure(events: list[Event]) -> Failed:
    assert len(events) == 1 and isinstance(events[0], Failed), events
    return events[0]


async def wait_status(worker, check, timeout_s: float = 10.0) -> WorkerStatus:
    """Until ``check(status)`` holds (statuses are pushed; this polls the last one)."""
    async with asyncio.timeout(timeout_s):
        while not check(worker.status()):
            await asyncio.sleep(0.05)
    return worker.status()
