"""A server-sent event stream as a plain ASGI response, with the two ways a stream ends early.

- The client disconnects: a watcher on ``receive`` sees ``http.disconnect`` and the writer is
  cancelled (uvicorn would otherwise drop our writes silently and generation would go on).
- The client stops reading: each write waits for the transport to drain; a write that does not
  finish within ``send_timeout_s`` ends the stream unfinished (the server closes the
  connection).

Either way ``on_end`` is called once with how the stream ended, so the caller can cancel the
request in the worker and count the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from enum import Enum
from typing import Any

from starlette.responses import Response

DONE = "[DONE]"


class StreamEnd(Enum):
    COMPLETE = "complete"
    DISCONNECTED = "disconnected"
    SEND_TIMEOUT = "send_timeout"


def encode_event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


class EventStreamResponse(Response):
    """``text/event-stream`` of ``data: ...`` events; a Response only so routes can return it."""

    def __init__(self, events: AsyncIterator[dict[str, Any] | str], send_timeout_s: float,
                 on_end: Callable[[StreamEnd], Awaitable[None]],
                 headers: dict[str, str] | None = None) -> None:
        self.status_code = 200
        self.background = None
        self._events = events
        self._send_timeout_s = send_timeout_s
        self._on_end = on_end
        self._headers = {"content-type": "text/event-stream; charset=utf-8",
                         "cache-control": "no-cache", "x-accel-buffering": "no",
                         **(headers or {})}
        self.raw_headers = [(k.encode(), v.encode()) for k, v in self._headers.items()]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        end = StreamEnd.DISCONNECTED
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
            end = await self._race(receive, send)
        finally:
            await asyncio.shield(self._on_end(end))

    async def _race(self, receive: Callable, send: Callable) -> StreamEnd:
        writer = asyncio.create_task(self._write_all(send))
        watcher = asyncio.create_task(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({writer, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, watcher):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return writer.result() if writer in done else StreamEnd.DISCONNECTED

    async def _write_all(self, send: Callable) -> StreamEnd:
        async for payload in self._events:
            if not await self._send(send, encode_event(payload), more_body=True):
                return StreamEnd.SEND_TIMEOUT
        if not await self._send(send, b"", more_body=False):
            return StreamEnd.SEND_TIMEOUT
        return StreamEnd.COMPLETE

    async def _send(self, send: Callable, body: bytes, more_body: bool) -> bool:
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await send({"type": "http.response.body", "body": body, "more_body": more_body})
        except TimeoutError:
            return False
        return True


async def _wait_disconnect(receive: Callable) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(receive: Callable) -> None:
    """Return when the client has gone away (for non-streaming requests)."""
    await _wait_disconnect(receive)
