"""``flexserve chat --url``: a conversation with a running server over the OpenAI API.

Plain HTTP from the standard library: each turn POSTs the whole history to
``/v1/chat/completions`` with ``stream: true`` and writes the deltas as they arrive. Server
errors (OpenAI error objects, in the status or in the stream) become :class:`FlexServeError`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from flexserve.errors import ContextOverflowError, FlexServeError

CONNECT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class RemoteReply:
    text: str
    finish_reason: str | None
    usage: dict[str, int]
    timings: dict[str, Any]

    def summary(self) -> str:
        device = self.timings.get("device", {})
        host = self.timings.get("host", {})
        parts = [f"{self.usage.get('prompt_tokens', 0)} prompt tokens",
                 f"{self.usage.get('completion_tokens', 0)} generated",
                 f"finish: {self.finish_reason}"]
        if device:
            parts.append(f"device TTFT {device['ttft_s'] * 1000:.0f} ms, "
                         f"decode {device['decode_tokens_per_s']:.1f} tokens/s")
        if host.get("ttft_s") is not None:
            parts.append(f"host TTFT {host['ttft_s'] * 1000:.0f} ms")
        return "[" + "; ".join(parts) + "]"


class RemoteChat:
    def __init__(self, base_url: str, model: str, sampling: dict[str, Any],
                 api_key: str | None = None) -> None:
        self._url = base_url.rstrip("/") + "/v1/chat/completions"
        self._model = model
        self._sampling = sampling
        self._api_key = api_key

    def reply(self, messages: list[dict[str, str]], out: TextIO) -> RemoteReply:
        body = {"model": self._model, "messages": messages, "stream": True,
                "stream_options": {"include_usage": True}, **self._sampling}
        parts: list[str] = []
        finish_reason: str | None = None
        usage: dict[str, int] = {}
        timings: dict[str, Any] = {}
        for chunk in self._events(body):
            for choice in chunk.get("choices", []):
                text = choice.get("delta", {}).get("content") or ""
                parts.append(text)
                out.write(text)
                out.flush()
                finish_reason = choice.get("finish_reason") or finish_reason
            usage = chunk.get("usage") or usage
            timings = chunk.get("flexserve") or timings
        return RemoteReply("".join(parts), finish_reason, usage, timings)

    def _events(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self._url, json.dumps(body).encode(), headers)
        try:
            with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S) as response:
                yield from _parse_stream(response)
        except urllib.error.HTTPError as exc:
            raise _server_error(exc.code, exc.read()) from None
        except urllib.error.URLError as exc:
            raise FlexServeError(f"cannot reach {self._url}: {exc.reason}") from None


def _parse_stream(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    for raw in lines:
        line = raw.decode("utf-8").strip()
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        if "error" in chunk:
            raise FlexServeError(f"server error: {chunk['error'].get('message')}")
        yield chunk


def _server_error(status: int, body: bytes) -> FlexServeError:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return FlexServeError(f"server answered HTTP {status}")
    message = f"server answered HTTP {status}: {error.get('message')}"
    if error.get("code") == "context_length_exceeded":
        return ContextOverflowError(message)
    return FlexServeError(message)
