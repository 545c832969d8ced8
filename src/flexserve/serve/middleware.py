"""Two ASGI middlewares in front of the app: an API key check and a request body limit.

- :class:`ApiKeyGuard`: with a key configured, ``/v1/*`` and ``/metrics`` need
  ``Authorization: Bearer KEY`` (compared in constant time); anything else is a 401.
  ``/health`` stays open for probes.
- :class:`BodyLimit`: reads a request body up to ``max_body_bytes`` before the app sees it and
  answers 413 beyond that (whether or not a Content-Length was sent); the app then gets the
  body replayed, and later ``receive`` calls (disconnect detection) go to the server.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable

from flexserve.serve.api_errors import APIError, body_too_large, unauthorized

ASGIApp = Callable
PROTECTED_PREFIXES = ("/v1/", "/metrics")


async def send_error(send: Callable, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ApiKeyGuard:
    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self._expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self._expected is not None and scope["type"] == "http" and _protected(scope):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await send_error(send, unauthorized())
                return
        await self.app(scope, receive, send)


def _protected(scope: dict) -> bool:
    path = scope.get("path", "")
    return path == "/metrics" or path.startswith(PROTECTED_PREFIXES)


class BodyLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_body_bytes:
            await send_error(send, body_too_large(self.max_body_bytes))
            return
        body = await self._read(receive)
        if body is None:
            await send_error(send, body_too_large(self.max_body_bytes))
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Callable) -> bytes | None:
        parts: list[bytes] = []
        size_bytes = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(parts)
            chunk = message.get("body", b"")
            size_bytes += len(chunk)
            if size_bytes > self.max_body_bytes:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)


def _declared_length(scope: dict) -> int:
    value = dict(scope["headers"]).get(b"content-length", b"0")
    try:
        return int(value)
    except ValueError:
        return 0


def _replay(body: bytes, receive: Callable) -> Callable:
    replayed = False

    async def replay_receive() -> dict:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay_receive
