"""The FlexServe Framework TA: load a sealed model, generate from it layer by layer.

Commands (GlobalPlatform parameters):

- ``CMD_OPEN_MODEL``: memref in = the sealed blob's flash file name. Verifies the header and
  manifest, decrypts the GGUF index, builds the config and the tokenizer (no weights yet).
- ``CMD_GENERATE``: memref in = a :class:`GenerateRequest` (JSON), memref out = a
  :class:`GenerateAnswer`. Streams every layer through the pipeline (alloc, load, decrypt,
  install) and runs the prompt through it as the layers arrive, then decodes. Without a
  cache, afterwards (or on any failure) every frame is scrubbed and handed back; with one
  (``FrameworkOptions.cache_bytes``, docs/cache.md) the planned layers and the session's KV
  cache stay in Flex-Mem for the next request, and the normal world can take them back with
  ``rsmem_reclaim``.
- ``CMD_CLOSE_MODEL``: forget the open model.

Any verification failure ends the request with the one generic ``SecurityError`` (the
trusted OS turns it into ``ERROR_SECURITY``) after everything decrypted so far has been
scrubbed and released. ``last_trace`` keeps the stage record of the last request for the
timing model.

Matrix work on the Flex-NPU: the engine's arithmetic runs on the host, but the TA takes the
NPU into secure mode (``npu_acquire``) for the compute and gives it back (``npu_release``),
so the mode switches are real monitor calls; the jobs it would submit are counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flexserve.engine.config import ModelConfig
from flexserve.engine.generate import Generator
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layers import LayerGroup
from flexserve.engine.matrix import DEFAULT_WEIGHT_FORMAT, WeightFormat
from flexserve.engine.model import Transformer
from flexserve.errors import ConfigError, SecurityError
from flexserve.soc.constants import frame_rounded_bytes
from flexserve.tee.framework.cache_policy import CachePolicyConfig
from flexserve.tee.framework.files import FileRpc, ServiceBlobReader
from flexserve.tee.framework.kv_store import FileWriter, KvStore
from flexserve.tee.framework.memory import (
    FlexMemPool,
    SecureMemoryKind,
    SecurePool,
    TzascPool,
)
from flexserve.tee.framework.meter import WorkMeter
from flexserve.tee.framework.model_cache import ModelCache, ResidentModel
from flexserve.tee.framework.pipeline import LayerLoader
from flexserve.tee.framework.prefill import PrefilledModel, StreamedPrefill
from flexserve.tee.framework.request import GenerateAnswer, GenerateRequest
from flexserve.tee.framework.trace import LayerTrace, RequestTrace, Stage, StageKind
from flexserve.tee.gp import Origin, ParamType, TeeError, TeeResult
from flexserve.tee.sealing import SealedModel, SecureDevice
from flexserve.tee.ta import TaParam, TrustedApplication, expect_types

CMD_OPEN_MODEL = 1
CMD_GENERATE = 2
CMD_CLOSE_MODEL = 3
CHAT_TEMPLATE_KEY = "tokenizer.chat_template"
MAX_NAME_BYTES = 256


@dataclass(frozen=True)
class FrameworkOptions:
    """Per-device choices of the framework (see docs/systems.md).

    ``memory``: Flex-Mem per layer, or one TZASC region (strawman designs), allocated for the
    whole model at once when ``alloc_upfront`` or grown layer by layer otherwise.
    ``pipeline``: compute each layer as soon as it is installed; without it every layer is
    loaded and decrypted before the first compute.
    """

    use_npu: bool = True
    memory: SecureMemoryKind = SecureMemoryKind.FLEXMEM
    alloc_upfront: bool = False
    pipeline: bool = True
    cache_bytes: int = 0
    #: the engine's weight format (docs/engine.md): ``int4`` is fast; ``float32`` is exact,
    #: so a reused KV prefix gives bit-for-bit the text of a cold run (docs/cache.md)
    weight_format: WeightFormat = DEFAULT_WEIGHT_FORMAT

    def __post_init__(self) -> None:
        if self.cache_bytes < 0:
            raise ConfigError("cache_bytes must be >= 0")
        if self.cache_bytes and self.memory is not SecureMemoryKind.FLEXMEM:
            raise ConfigError("only Flex-Mem can hold a cache across requests")


@dataclass
class OpenModel:
    name: str
    sealed: SealedModel
    reader: ServiceBlobReader
    meta: GGUFFile
    config: ModelConfig
    tokenizer: Any
    groups: list[LayerGroup]
    init_stages: list[Stage]


@dataclass
class FrameworkSession:
    #: Historical KV caches are per session: a conversation never reuses (or times) another
    #: client's tokens, so prefix reuse is no side channel between apps.
    kv_owner: int = 0
    model: OpenModel | None = None
    traces: list[RequestTrace] = field(default_factory=list)


class FrameworkTA(TrustedApplication):
    uuid = uuid.UUID("f1e75e00-4e00-4a5e-9f1e-000000000004")

    def __init__(self, services: Any) -> None:
        super().__init__(services)
        self.commands = {CMD_OPEN_MODEL: self.open_model, CMD_GENERATE: self.generate,
                         CMD_CLOSE_MODEL: self.close_model}
        self.device: SecureDevice | None = None
        self.files: FileRpc | None = None
        self.meter = WorkMeter({"secure": lambda: services.port.work})
        self.options = FrameworkOptions()
        self.last_trace: RequestTrace | None = None
        self.cache: ModelCache | None = None
        self._sessions_opened = 0

    def attach(self, device: SecureDevice, files: FileWriter, meter: WorkMeter | None = None,
               options: FrameworkOptions | None = None) -> None:
        """Boot-time wiring: secure storage (HUK, RPMB), the file service RPC, counters."""
        self.device, self.files = device, files
        self.meter = meter or self.meter
        self.options = options or self.options
        self.cache = None
        if self.options.cache_bytes:
            self.cache = ModelCache(self.services, CachePolicyConfig(self.options.cache_bytes),
                                    kv=KvStore(self.services, files))

    def rsmem_reclaim(self, size_bytes: int) -> np.ndarray:
        """The normal world under pressure asks for ``size_bytes``; returns the IPA pages
        given up (scrubbed and unmapped; possibly fewer than asked, possibly none)."""
        if self.cache is None:
            return np.zeros(0, dtype=np.int64)
        return self.cache.reclaim(size_bytes)

    # ----- sessions -----
    def open_session(self, params: list[TaParam]) -> FrameworkSession:
        self._sessions_opened += 1
        return FrameworkSession(kv_owner=self._sessions_opened)

    def close_session(self, session: FrameworkSession) -> None:
        self._close(session)

    # ----- commands -----
    def open_model(self, session: FrameworkSession, params: list[TaParam]) -> None:
        expect_types(params, ParamType.MEMREF_INPUT)
        name = _blob_name(params[0].input_bytes())
        if self.device is None or self.files is None:
            raise TeeError(TeeResult.ERROR_BAD_STATE, Origin.TRUSTED_APP)
        self._close(session)
        before = self.meter.snapshot()
        reader = ServiceBlobReader(self.files, self.services.port, name)
        sealed = SealedModel.open(reader, self.device.keys, self.device.rollback)
        meta = sealed.meta_gguf(reader)
        groups = sealed.layer_groups(meta)
        from flexserve.engine.tokenizer import Tokenizer

        tokenizer = Tokenizer.from_metadata(meta.metadata)
        init = Stage(StageKind.INIT, "meta", sealed.meta_unit.n_bytes,
                     requests=reader.requests, work=self.meter.since(before))
        session.model = OpenModel(name, sealed, reader, meta, ModelConfig.from_gguf(meta),
                                  tokenizer, groups, [init])

    def close_model(self, session: FrameworkSession, params: list[TaParam]) -> None:
        expect_types(params)
        self._close(session)

    def generate(self, session: FrameworkSession, params: list[TaParam]) -> None:
        expect_types(params, ParamType.MEMREF_INPUT, ParamType.MEMREF_OUTPUT)
        model = session.model
        if model is None:
            raise TeeError(TeeResult.ERROR_BAD_STATE, Origin.TRUSTED_APP)
        request = GenerateRequest.decode(params[0].input_bytes())
        answer = self._generate(model, request, f"{model.name}#{session.kv_owner}")
        params[1].set_output(answer.encode())

    # ----- the request -----
    def _generate(self, model: OpenModel, request: GenerateRequest,
                  kv_key: str) -> GenerateAnswer:
        sampling = request.sampling_params()
        prompt_ids = _prompt_ids(model, request)
        capacity_tokens = len(prompt_ids) + sampling.max_tokens
        if capacity_tokens > model.config.context_length:
            raise ConfigError("the prompt plus max_tokens exceed the model's context")
        init, model.init_stages = model.init_stages, []  # paid once per opened model
        trace = RequestTrace(model.name, model.config, init_stages=init,
                             prompt_tokens=len(prompt_ids))
        self.last_trace = trace
        memory = self._request_memory(model, kv_key)
        npu = _NpuHold(self.services, self.options.use_npu)
        try:
            prefix = memory.prefix(model.name, prompt_ids, trace)
            prefill = self._stream_layers(model, prompt_ids, capacity_tokens, memory, npu,
                                          trace, prefix)
            result = Generator(PrefilledModel(prefill), model.tokenizer).generate(
                prompt_ids, sampling)
            trace.generated_tokens = result.n_generated_tokens
        except SecurityError:
            memory.failed()
            raise SecurityError() from None
        except BaseException:
            memory.failed()
            raise
        finally:
            npu.release(trace)
        memory.done(len(prompt_ids), trace, _kv_of(prefill, prompt_ids, result.token_ids))
        return GenerateAnswer(result.text, result.finish_reason, result.n_prompt_tokens,
                              result.n_generated_tokens)

    def _request_memory(self, model: OpenModel, kv_key: str) -> _RequestMemory:
        if self.cache is None:
            return _ColdMemory(self._pool(model), self._transformer(model))
        units = [(u.name, u.n_bytes) for u in model.sealed.weight_units]
        resident = self.cache.checkout(model.name, lambda: self._transformer(model), units)
        return _CachedMemory(self.cache, resident, FlexMemPool(self.services), kv_key)

    def _transformer(self, model: OpenModel) -> Transformer:
        return Transformer(model.config, self.options.weight_format)

    def _pool(self, model: OpenModel) -> SecurePool:
        if self.options.memory is SecureMemoryKind.FLEXMEM:
            return FlexMemPool(self.services)
        upfront = sum(frame_rounded_bytes(u.n_bytes) for u in model.sealed.weight_units)
        return TzascPool(self.services,
                         upfront_bytes=upfront if self.options.alloc_upfront else None)

    def _stream_layers(self, model: OpenModel, prompt_ids: list[int], capacity_tokens: int,
                       memory: _RequestMemory, npu: _NpuHold, trace: RequestTrace,
                       prefix: tuple[tuple[bytes, int], int] | None) -> StreamedPrefill:
        kv, reused = prefix if prefix is not None else (None, 0)
        prefill = StreamedPrefill(memory.transformer, prompt_ids, capacity_tokens, kv, reused)
        loader = LayerLoader(memory.pool, model.sealed, model.reader, self.meter)
        pending: list[tuple[str, LayerTrace]] = []
        for unit, group in zip(model.sealed.weight_units, model.groups, strict=True):
            layer = loader.new_trace(unit)
            trace.layers.append(layer)
            if not memory.is_resident(group.name):
                loader.load(unit, group, memory.transformer, layer)
            pending.append((group.name, layer))
            if self.options.pipeline:
                self._compute(prefill, pending.pop(), npu, trace)
        for item in pending:  # staged: every layer is resident before the first compute
            self._compute(prefill, item, npu, trace)
        return prefill

    def _compute(self, prefill: StreamedPrefill, item: tuple[str, LayerTrace], npu: _NpuHold,
                 trace: RequestTrace) -> None:
        name, layer = item
        before = self.meter.snapshot()
        npu.acquire(trace)
        jobs = 1 if prefill.run_group(name) and npu.held else 0
        trace.npu_jobs += jobs
        layer.stages.append(Stage(StageKind.COMPUTE, name, layer.plaintext_bytes,
                                  requests=jobs, work=self.meter.since(before)))

    def _close(self, session: FrameworkSession) -> None:
        if session.model is not None:
            session.model.sealed.close()
            session.model = None


class _ColdMemory:
    """No cache: the request's layers live in its own pool and go when it ends."""

    def __init__(self, pool: SecurePool, transformer: Transformer) -> None:
        self.pool, self.transformer = pool, transformer

    def is_resident(self, layer: str) -> bool:
        return False

    def prefix(self, model: str, prompt_ids: list[int], trace: RequestTrace) -> None:
        return None

    def done(self, prompt_tokens: int, trace: RequestTrace,
             kv: tuple[list[int], bytes] | None = None) -> None:
        self.pool.release_all()

    def failed(self) -> None:
        self.pool.release_all()


class _CachedMemory:
    """Resident layers are reused; what the request loads is offered to the cache."""

    def __init__(self, cache: ModelCache, resident: ResidentModel, pool: FlexMemPool,
                 kv_key: str) -> None:
        self.cache, self.resident, self.pool, self.kv_key = cache, resident, pool, kv_key
        self.transformer = resident.transformer

    def is_resident(self, layer: str) -> bool:
        return self.cache.is_resident(self.resident, layer)

    def prefix(self, model: str, prompt_ids: list[int],
               trace: RequestTrace) -> tuple[tuple[bytes, int], int] | None:
        """A kept KV cache whose tokens start the prompt: (its bytes and tokens, reused)."""
        kv = self.cache.kv
        found = kv.match(self.kv_key, prompt_ids) if kv is not None else None
        if found is None:
            return None
        entry, reused = found
        if not entry.resident:
            trace.kv_restored_bytes = entry.n_bytes + 16  # ciphertext and tag, read back
        trace.reused_prompt_tokens = reused
        assert kv is not None
        stored = len(entry.token_ids)
        return (kv.take(entry), stored), reused

    def done(self, prompt_tokens: int, trace: RequestTrace,
             kv: tuple[list[int], bytes] | None = None) -> None:
        restored = sum(layer.ciphertext_bytes for layer in trace.layers if not layer.resident)
        self.cache.checkin(self.resident, self.pool.take_all(), prompt_tokens, restored,
                           (self.kv_key, *kv) if kv is not None else None)

    def failed(self) -> None:
        self.cache.drop_request(self.resident, self.pool.take_all())


_RequestMemory = _ColdMemory | _CachedMemory


class _NpuHold:
    """The Flex-NPU in secure mode for this TA while the request computes."""

    def __init__(self, services: Any, enabled: bool) -> None:
        self.services, self.enabled, self.held = services, enabled, False

    def acquire(self, trace: RequestTrace) -> None:
        if self.enabled and not self.held:
            record = self.services.port.npu_acquire(self.services.owner)
            trace.npu_mode_switches += max(1, record.npu_mode_switches)
            self.held = True

    def release(self, trace: RequestTrace) -> None:
        if self.held:
            record = self.services.port.npu_release(self.services.owner)
            trace.npu_mode_switches += max(1, record.npu_mode_switches)
            self.held = False


def _kv_of(prefill: StreamedPrefill, prompt_ids: list[int],
           generated: tuple[int, ...]) -> tuple[list[int], bytes] | None:
    """The token ids whose KV the request's cache holds, and that KV's bytes."""
    length = prefill.cache.length
    if not length:
        return None
    return (list(prompt_ids) + list(generated))[:length], prefill.cache.export_bytes(length)


def _blob_name(data: bytes) -> str:
    if not 0 < len(data) <= MAX_NAME_BYTES:
        raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP) from None


def _prompt_ids(model: OpenModel, request: GenerateRequest) -> list[int]:
    if request.raw or CHAT_TEMPLATE_KEY not in model.meta.metadata:
        return model.tokenizer.encode(request.prompt)
    from flexserve.engine.chat_template import ChatTemplate

    template = ChatTemplate.from_metadata(model.meta.metadata)
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages.append({"role": "user", "content": request.prompt})
    text = template.render(messages, add_generation_prompt=True)
    return model.tokenizer.encode_prompt(text)
