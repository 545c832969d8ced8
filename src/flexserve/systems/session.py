"""One emulated phone kept across requests: the way an app (or the server) uses FlexServe.

A :class:`DeviceSession` boots the device once, seals and opens each model on first use (one
GlobalPlatform session per model; the framework init is paid then), and serves requests one
after another. A system with a cache (FlexServe) keeps weights in Flex-Mem between requests,
so later requests skip the allocation, loading and decryption of resident layers; every
request's trace is timed on the device clock like a cold one.

:meth:`DeviceSession.stream` runs a request a few tokens per TA invocation
(:class:`~.device_stream.DeviceStream`); one stream per model at a time, streams of different
models may interleave. The session keeps a virtual device clock, ``clock_s``: every request
advances it by its modeled time (TTFT, then each decode step), :meth:`DeviceSession.
advance_idle` by time that passes with nothing running. Idle time goes to the normal world's
:class:`~flexserve.nwos.idle.IdleGovernor`, which asks for on-demand protection once the idle
window is reached (docs/serving.md). TEE failures come back as the error hierarchy:
``SecurityError`` (counted, no detail), ``ContextOverflowError``, ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from flexserve.catalog.servable import stored_model
from flexserve.engine.matrix import DEFAULT_WEIGHT_FORMAT, WeightFormat
from flexserve.engine.sampling import SamplingParams
from flexserve.errors import ConfigError, ContextOverflowError, OutOfMemoryError, SecurityError
from flexserve.monitor.status import SmcStatus
from flexserve.nwos.idle import IdleGovernor
from flexserve.nwos.tee_client import TeeClientError
from flexserve.soc.constants import FRAME_SIZE_BYTES, GIB, MIB
from flexserve.systems import pricing
from flexserve.systems.config import MemoryKind, SystemConfig
from flexserve.systems.device import Device, FrameworkClient, boot_device
from flexserve.systems.device_stream import DeviceStream
from flexserve.systems.runner import Prompt, framework_options
from flexserve.systems.schedule import SystemTiming, time_request
from flexserve.tee.framework import GenerateAnswer, GenerateRequest
from flexserve.tee.framework.request import sampling_dict
from flexserve.tee.framework.trace import RequestTrace, StageKind
from flexserve.tee.gp import TeeResult
from flexserve.tee.sealing.store import ModelStore
from flexserve.timing.profile import DeviceProfile

DEFAULT_SESSION_DRAM_BYTES = 2 * GIB
DEFAULT_CACHE_BYTES = 512 * MIB
DEFAULT_CMA_BYTES = 768 * MIB
DEFAULT_STEP_TOKENS = 4
T = TypeVar("T")


@dataclass
class SessionCounters:
    """What the session's requests did on the device, cumulative."""

    requests: int = 0
    bytes_decrypted: int = 0  # weight layers and written-back KV caches brought back
    integrity_failures: int = 0  # requests ended by the TA's SecurityError


@dataclass(frozen=True)
class SessionReply:
    answer: GenerateAnswer
    trace: RequestTrace
    timing: SystemTiming


class DeviceSession:
    """A booted device serving a sequence of requests for one system."""

    def __init__(self, system: SystemConfig, profile: DeviceProfile, *,
                 store: ModelStore | None = None, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 dram_bytes: int = DEFAULT_SESSION_DRAM_BYTES,
                 weight_format: WeightFormat = DEFAULT_WEIGHT_FORMAT) -> None:
        if not system.secure:
            raise ConfigError(f"{system.label} does not run on the secure device")
        self.system, self.profile = system, profile
        self.store = store or ModelStore.default()
        cma = DEFAULT_CMA_BYTES if system.memory is MemoryKind.CMA else 0
        self.device: Device = boot_device(self.store.root, self.store.device,
                                          dram_bytes=dram_bytes,
                                          options=framework_options(system, cache_bytes,
                                                                    weight_format),
                                          cma_bytes=cma)
        self._clients: dict[str, FrameworkClient] = {}
        self._blobs: dict[str, str] = {}
        self._streams: dict[str, DeviceStream] = {}
        self.clock_s = 0.0
        self.counters = SessionCounters()
        window_s = self.device.platform.monitor.config.idle_window_ms / 1000
        self.idle = IdleGovernor(self.device.platform.normal, window_s)

    def open_blobs(self) -> dict[str, str]:
        """Model name -> the sealed blob it was opened from (the cache's model key)."""
        return dict(self._blobs)

    def open_model(self, model: str) -> None:
        """Seal (first use) and open ``model`` now rather than at its first request."""
        self._client(model)

    def generate(self, model: str, prompt: Prompt, params: SamplingParams) -> SessionReply:
        client = self._client(model)
        request = GenerateRequest(prompt.text, prompt.raw, prompt.system, sampling_dict(params))
        answer = self.device_call(lambda: client.generate(request))
        trace = self.device.ta.last_trace
        assert trace is not None and trace.shape is not None
        timing = time_request(trace, self.system, self.profile)
        self.clock_s += timing.ttft_s + pricing.decode_s(
            trace.shape, trace.prompt_tokens, max(0, trace.generated_tokens - 1), self.system,
            self.profile)
        self._count(trace)
        return SessionReply(answer, trace, timing)

    def stream(self, model: str, request: GenerateRequest,
               step_tokens: int = DEFAULT_STEP_TOKENS) -> DeviceStream:
        """Prefill ``request`` on ``model``; the stream yields its chunks (module docstring)."""
        if step_tokens < 1:
            raise ConfigError("step_tokens must be >= 1")
        if model in self._streams:
            raise ConfigError(f"{model} is already streaming a request")
        client = self._client(model)
        first = self.device_call(lambda: client.stream_begin(request))
        trace = self.device.ta.last_trace
        assert trace is not None
        stream = DeviceStream(self, client, trace, first, step_tokens)
        if not stream.ended:
            self._streams[model] = stream
        return stream

    def stream_ended(self, stream: DeviceStream) -> None:
        """Called by a stream when it ends (finished, cancelled or failed)."""
        for model, running in list(self._streams.items()):
            if running is stream:
                del self._streams[model]
        self._count(stream.trace)

    def advance_idle(self, seconds: float) -> SmcStatus | None:
        """``seconds`` pass with nothing running: the clock moves and the idle policy sees it
        (the on-demand protection answer if it asked, else None)."""
        if seconds < 0:
            raise ConfigError("idle time must be >= 0 s")
        self.clock_s += seconds
        return self.idle.idle(seconds)

    @property
    def streaming(self) -> int:
        return len(self._streams)

    def resident_bytes(self, model: str) -> int:
        """Bytes of ``model``'s weight layers the Flex-Mem cache keeps resident."""
        cache, blob = self.device.ta.cache, self._blobs.get(model)
        resident = cache.models.get(blob) if cache is not None and blob else None
        return resident.frames * FRAME_SIZE_BYTES if resident is not None else 0

    def device_call(self, call: Callable[[], T],
                    on_error: Callable[[], None] | None = None) -> T:
        """One TEE call: the device works (idleness restarts); failures become errors."""
        self.idle.busy()
        try:
            return call()
        except TeeClientError as error:
            if on_error is not None:
                on_error()
            raise self._error_of(error) from None

    def _error_of(self, error: TeeClientError) -> Exception:
        if error.result == TeeResult.ERROR_SECURITY:
            self.counters.integrity_failures += 1
            return SecurityError()
        if error.result == TeeResult.ERROR_EXCESS_DATA:
            return ContextOverflowError("the prompt plus max_tokens exceed the model's context")
        if error.result == TeeResult.ERROR_BAD_PARAMETERS:
            return ConfigError("the device refused the request as malformed")
        if error.result == TeeResult.ERROR_OUT_OF_MEMORY:
            return OutOfMemoryError("the device ran out of secure memory")
        return error

    def _count(self, trace: RequestTrace) -> None:
        self.counters.requests += 1
        self.counters.bytes_decrypted += trace.bytes_of(StageKind.DECRYPT) + \
            trace.kv_restored_bytes

    def close(self) -> None:
        for stream in list(self._streams.values()):
            stream.cancel()
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self.device.ta.cache is not None:
            self.device.ta.cache.release_all()

    def _client(self, model: str) -> FrameworkClient:
        if model not in self._clients:
            stored = stored_model(self.store, model)
            client = FrameworkClient(self.device)
            client.open_model(stored.path.name)
            self._clients[model] = client
            self._blobs[model] = stored.path.name
        return self._clients[model]

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
