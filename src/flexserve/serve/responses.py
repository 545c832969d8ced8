"""The OpenAI response objects: whole responses, stream chunks and the usage chunk.

One :class:`ResponseShape` per request knows its kind (chat or completions), id, model and
creation time, so every chunk of a stream carries the same ``id`` and ``created``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from flexserve.serve.protocol import Finished

Kind = Literal["chat", "completion"]
_ID_PREFIX = {"chat": "chatcmpl-", "completion": "cmpl-"}
_OBJECT = {"chat": "chat.completion", "completion": "text_completion"}
_CHUNK_OBJECT = {"chat": "chat.completion.chunk", "completion": "text_completion"}


def new_request_id(kind: Kind) -> str:
    return _ID_PREFIX[kind] + uuid.uuid4().hex


def usage(finished: Finished) -> dict[str, int]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
    }


@dataclass(frozen=True)
class ResponseShape:
    kind: Kind
    request_id: str
    model: str
    created: int = field(default_factory=lambda: int(time.time()))

    def _head(self, obj: str) -> dict[str, Any]:
        return {"id": self.request_id, "object": obj, "created": self.created,
                "model": self.model, "system_fingerprint": None}

    def whole(self, text: str, finished: Finished, extension: dict[str, Any]) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None,
                                  "finish_reason": finished.finish_reason}
        if self.kind == "chat":
            choice["message"] = {"role": "assistant", "content": text, "refusal": None}
        else:
            choice["text"] = text
        return {**self._head(_OBJECT[self.kind]), "choices": [choice],
                "usage": usage(finished), "flexserve": extension}

    def chunk(self, text: str, finish_reason: str | None = None,
              first: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text or first:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text
        return {**self._head(_CHUNK_OBJECT[self.kind]), "choices": [choice]}

    def usage_chunk(self, finished: Finished) -> dict[str, Any]:
        return {**self._head(_CHUNK_OBJECT[self.kind]), "choices": [],
                "usage": usage(finished)}
