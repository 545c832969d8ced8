"""One emulated phone kept across requests: the way an app (or the server) uses FlexServe.

A :class:`DeviceSession` boots the device once, seals and opens each model on first use (one
GlobalPlatform session per model; the framework init is paid then), and serves requests one
after another. A system with a cache (FlexServe) keeps weights in Flex-Mem between requests,
so later requests skip the allocation, loading and decryption of resident layers; every
request's trace is timed on the device clock like a cold one.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.catalog.servable import stored_model
from flexserve.engine.matrix import DEFAULT_WEIGHT_FORMAT, WeightFormat
from flexserve.engine.sampling import SamplingParams
from flexserve.errors import ConfigError
from flexserve.soc.constants import GIB, MIB
from flexserve.systems.config import MemoryKind, SystemConfig
from flexserve.systems.device import Device, FrameworkClient, boot_device
from flexserve.systems.runner import Prompt, framework_options
from flexserve.systems.schedule import SystemTiming, time_request
from flexserve.tee.framework import GenerateAnswer, GenerateRequest
from flexserve.tee.framework.request import sampling_dict
from flexserve.tee.framework.trace import RequestTrace
from flexserve.tee.sealing.store import ModelStore
from flexserve.timing.profile import DeviceProfile

DEFAULT_SESSION_DRAM_BYTES = 2 * GIB
DEFAULT_CACHE_BYTES = 512 * MIB
DEFAULT_CMA_BYTES = 768 * MIB


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

    def open_blobs(self) -> dict[str, str]:
        """Model name -> the sealed blob it was opened from (the cache's model key)."""
        return dict(self._blobs)

    def generate(self, model: str, prompt: Prompt, params: SamplingParams) -> SessionReply:
        client = self._client(model)
        answer = client.generate(GenerateRequest(prompt.text, prompt.raw, prompt.system,
                                                 sampling_dict(params)))
        trace = self.device.ta.last_trace
        assert trace is not None
        return SessionReply(answer, trace, time_request(trace, self.system, self.profile))

    def close(self) -> None:
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
