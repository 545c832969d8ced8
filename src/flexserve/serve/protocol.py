"""What the HTTP server and the device worker say to each other.

The server (normal-world app) never touches the device: it sends a :class:`WorkRequest` to the
worker process that owns the emulated phone and receives a stream of events for it:
:class:`Started` once, :class:`Delta` per chunk of text, then exactly one :class:`Finished` or
:class:`Failed`. Every message is a plain frozen dataclass of JSON-able fields so it crosses the
process boundary by pickling without dragging engine objects along.

Order: a request that fails before its prefill completes (unknown model, bad sampling values,
prompt too long, a full queue's cancellation) gets one :class:`Failed` and nothing else.
Otherwise :class:`Started` comes once the TA accepted the prompt and finished the prefill, so a
server can answer with an HTTP error or with 200 and a stream after the first event.

Times: ``*_host_s`` are wall seconds on this machine; ``*_device_s`` are modeled seconds on
the emulated phone's clock (docs/systems.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class FailureKind(Enum):
    """Why a request failed; the server maps each kind to one HTTP status."""

    BAD_REQUEST = "bad_request"  # 400: invalid sampling values, empty prompt, bad messages
    CONTEXT = "context"  # 400: prompt plus max_tokens exceed the model's context
    NOT_FOUND = "not_found"  # 404: no such model
    SECURITY = "security"  # 500: an integrity check failed (no detail, fails closed)
    WORKER_DIED = "worker_died"  # 500: the device worker exited mid-request
    CANCELLED = "cancelled"  # the client went away or the server gave up on it
    INTERNAL = "internal"  # 500: anything else


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class WorkRequest:
    """One generation. ``messages`` for chat (rendered by the model's chat template inside
    the TA), else ``prompt`` as raw text (completions)."""

    request_id: str
    model: str  # a servable model name (see flexserve.catalog)
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] | None = None
    #: SamplingParams fields: max_tokens, temperature, top_p, top_k, seed, stop, ...
    sampling: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Started:
    """The TA accepted the request and finished its prefill; Deltas follow."""

    request_id: str
    queue_wait_host_s: float


@dataclass(frozen=True)
class Delta:
    """New text (may be empty while a multi-byte character or a stop string is pending)."""

    request_id: str
    text: str
    completion_tokens: int  # tokens sampled so far
    #: when the modeled device would have produced this chunk, from the request's start
    device_elapsed_s: float


@dataclass(frozen=True)
class Timings:
    ttft_host_s: float
    decode_tokens_per_s_host: float
    ttft_device_s: float
    decode_tokens_per_s_device: float
    breakdown_device_s: dict[str, float]  # TTFT breakdown on the modeled device
    system: str  # the system configuration served (e.g. "flexserve")
    profile: str  # the device profile (e.g. "rk3588")


@dataclass(frozen=True)
class Finished:
    request_id: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    timings: Timings


@dataclass(frozen=True)
class Failed:
    request_id: str
    kind: FailureKind
    message: str  # safe to show a client; never secret material


Event = Started | Delta | Finished | Failed


@dataclass(frozen=True)
class ModelState:
    """A servable model and what the device holds of it."""

    name: str
    loaded: bool  # a framework session has it open
    resident_bytes: int  # weight bytes kept in Flex-Mem by the cache
    sealed: bool  # a sealed blob is in the store


class WorkerState(Enum):
    BOOTING = "booting"
    LOADING = "loading"  # opening a model (the framework init)
    READY = "ready"
    RESTARTING = "restarting"  # died; a new worker starts after a back-off
    STOPPED = "stopped"


@dataclass(frozen=True)
class DeviceCounters:
    """Cumulative counters of the device since the worker booted (for /metrics)."""

    frames_by_state: dict[str, int]  # Flex-Mem frames: e.g. free/secure/cached
    cache_hits: int  # layers served resident from the Flex-Mem cache
    cache_misses: int
    world_switches: int
    bytes_decrypted: int
    integrity_failures: int
    device_clock_s: float  # the phone's virtual clock


@dataclass(frozen=True)
class WorkerStatus:
    state: WorkerState
    restarts: int
    running: int  # requests the worker is generating
    queued: int  # requests accepted but not started
    models: tuple[ModelState, ...]
    counters: DeviceCounters | None  # None while booting or restarting
