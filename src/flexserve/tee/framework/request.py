"""The wire format of a generation request and its answer (JSON in memory references).

The prompt is user data: it crosses into the secure world as bytes, and tokenization and
the chat template run inside the TA. Sampling fields map onto
:class:`~flexserve.engine.sampling.SamplingParams` (validated there).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from flexserve.engine.sampling import SamplingParams
from flexserve.errors import ConfigError

MAX_REQUEST_BYTES = 1 << 20


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    raw: bool = False
    system: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> GenerateRequest:
        if len(data) > MAX_REQUEST_BYTES:
            raise ConfigError("request too large")
        try:
            body = json.loads(data.decode("utf-8"))
            request = cls(prompt=str(body["prompt"]), raw=bool(body.get("raw", False)),
                          system=body.get("system"), sampling=dict(body.get("sampling", {})))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ConfigError("malformed generation request") from None
        if request.system is not None and not isinstance(request.system, str):
            raise ConfigError("malformed generation request")
        return request

    def sampling_params(self) -> SamplingParams:
        values = dict(self.sampling)
        if "stop" in values:
            values["stop"] = tuple(values["stop"])
        try:
            return SamplingParams(**values)
        except TypeError:
            raise ConfigError("unknown sampling field") from None


@dataclass(frozen=True)
class GenerateAnswer:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> GenerateAnswer:
        return cls(**json.loads(data.decode("utf-8")))


def sampling_dict(params: SamplingParams) -> dict[str, Any]:
    values = asdict(params)
    values["stop"] = list(params.stop)
    return values
