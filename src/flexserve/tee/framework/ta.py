"""The FlexServe Framework TA: load a sealed model, generate from it layer by layer.

Commands (GlobalPlatform parameters):

- ``CMD_OPEN_MODEL``: memref in = the sealed blob's flash file name. Verifies the header and
  manifest, decrypts the GGUF index, builds the config and the tokenizer (no weights yet).
- ``CMD_STREAM_BEGIN``: memref in = a :class:`GenerateRequest` (JSON), memref out = the first
  :class:`StreamChunk` (the first sampled token). Streams every layer through the pipeline
  (alloc, load, decrypt, install) and runs the prompt through it as the layers arrive; the
  prefilled request then stays in the session (:class:`RequestStream`). One stream per session:
  a second BEGIN (or GENERATE) while one runs is ``ERROR_BAD_STATE``.
- ``CMD_STREAM_NEXT``: value in ``a`` = how many tokens to decode now (1..``MAX_STEP_TOKENS``),
  memref out = the next :class:`StreamChunk`; the chunk whose ``finish_reason`` is set ends
  the request. No stream: ``ERROR_BAD_STATE``.
- ``CMD_STREAM_CANCEL``: end the session's stream now (nothing running: nothing to do). It ends
  as a finished request does: without a cache every frame is scrubbed and handed back; with
  one (``FrameworkOptions.cache_bytes``, docs/cache.md) the planned layers and the KV cache
  of the tokens so far are checked in, and the normal world can take them back with
  ``rsmem_reclaim``. Closing the model or the session cancels its stream too.
- ``CMD_GENERATE``: memref in = a :class:`GenerateRequest`, memref out = a
  :class:`GenerateAnswer`: BEGIN, then NEXT until the request finishes, in one invocation.
- ``CMD_CLOSE_MODEL``: forget the open model.

Any verification failure ends the request with the one generic ``SecurityError`` (the
trusted OS turns it into ``ERROR_SECURITY``) after everything decrypted so far has been
scrubbed and released. A prompt plus ``max_tokens`` beyond the context is
``ContextOverflowError`` (``ERROR_EXCESS_DATA``), any other bad input ``ConfigError``
(``ERROR_BAD_PARAMETERS``). ``last_trace`` is the stage record of the last request begun, for
the timing model; it is complete (generated tokens included) once that request has ended.

Matrix work on the Flex-NPU: the engine's arithmetic runs on the host, but the TA takes the
NPU into secure mode (``npu_acquire``) for the compute and gives it back (``npu_release``)
before each invocation returns, so the mode switches are real monitor calls and the normal
world has its NPU between the steps of a stream; the jobs it would submit are counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layer_groups import LayerGroup
from flexserve.engine.matrix import DEFAULT_WEIGHT_FORMAT, WeightFormat
from flexserve.engine.model import Transformer
from flexserve.errors import ConfigError, ContextOverflowError, SecurityError
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
from flexserve.tee.framework.model_cache import ModelCache
from flexserve.tee.framework.pipeline import LayerLoader
from flexserve.tee.framework.prefill import StreamedPrefill
from flexserve.tee.framework.request import GenerateAnswer, GenerateRequest
from flexserve.tee.framework.request_memory import (
    CachedMemory,
    ColdMemory,
    NpuHold,
    RequestMemory,
)
from flexserve.tee.framework.stream import RequestStream
from flexserve.tee.framework.trace import LayerTrace, RequestTrace, Stage, StageKind
from flexserve.tee.gp import Origin, ParamType, TeeError, TeeResult
from flexserve.tee.sealing import SealedModel, SecureDevice
from flexserve.tee.ta import TaParam, TrustedApplication, expect_types

CMD_OPEN_MODEL = 1
CMD_GENERATE = 2
CMD_CLOSE_MODEL = 3
CMD_STREAM_BEGIN = 4
CMD_STREAM_NEXT = 5
CMD_STREAM_CANCEL = 6
MAX_STEP_TOKENS = 1 << 16
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
    stream: RequestStream | None = None  # the request running between invocations


class FrameworkTA(TrustedApplication):
    uuid = uuid.UUID("f1e75e00-4e00-4a5e-9f1e-000000000004")

    def __init__(self, services: Any) -> None:
        super().__init__(services)
        self.commands = {CMD_OPEN_MODEL: self.open_model, CMD_GENERATE: self.generate,
                         CMD_CLOSE_MODEL: self.close_model,
                         CMD_STREAM_BEGIN: self.stream_begin, CMD_STREAM_NEXT: self.stream_next,
                         CMD_STREAM_CANCEL: self.stream_cancel}
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
        stream = self._begin(session, GenerateRequest.decode(params[0].input_bytes()))
        try:
            chunks = [stream.step(1)]
            while chunks[-1].finish_reason is None:
                chunks.append(stream.step(MAX_STEP_TOKENS))
        finally:
            session.stream = None
            stream.cancel()  # a no-op once finished; never leaves the request half-owned
        last = chunks[-1]
        assert last.finish_reason is not None
        answer = GenerateAnswer("".join(c.text for c in chunks), last.finish_reason,
                                last.prompt_tokens, last.completion_tokens)
        params[1].set_output(answer.encode())

    def stream_begin(self, session: FrameworkSession, params: list[TaParam]) -> None:
        expect_types(params, ParamType.MEMREF_INPUT, ParamType.MEMREF_OUTPUT)
        stream = self._begin(session, GenerateRequest.decode(params[0].input_bytes()))
        self._step(session, stream, 1, params[1])

    def stream_next(self, session: FrameworkSession, params: list[TaParam]) -> None:
        expect_types(params, ParamType.VALUE_INPUT, ParamType.MEMREF_OUTPUT)
        tokens, _ = params[0].value()
        if not 1 <= tokens <= MAX_STEP_TOKENS:
            raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP)
        if session.stream is None:
            raise TeeError(TeeResult.ERROR_BAD_STATE, Origin.TRUSTED_APP)
        self._step(session, session.stream, tokens, params[1])

    def stream_cancel(self, session: FrameworkSession, params: list[TaParam]) -> None:
        expect_types(params)
        self._cancel(session)

    # ----- the request -----
    def _begin(self, session: FrameworkSession, request: GenerateRequest) -> RequestStream:
        """Validate, prefill and keep the request as the session's stream."""
        model = session.model
        if model is None or session.stream is not None:
            raise TeeError(TeeResult.ERROR_BAD_STATE, Origin.TRUSTED_APP)
        sampling = request.sampling_params()
        prompt_ids = _prompt_ids(model, request)
        capacity_tokens = len(prompt_ids) + sampling.max_tokens
        if capacity_tokens > model.config.context_length:
            raise ContextOverflowError("the prompt plus max_tokens exceed the model's context")
        init, model.init_stages = model.init_stages, []  # paid once per opened model
        trace = RequestTrace(model.name, model.config, init_stages=init,
                             prompt_tokens=len(prompt_ids))
        self.last_trace = trace
        kv_key = f"{model.name}#{session.kv_owner}" if request.keep_kv else None
        memory = self._request_memory(model, kv_key)
        npu = NpuHold(self.services, self.options.use_npu)
        try:
            prefix = memory.prefix(model.name, prompt_ids, trace)
            prefill = self._stream_layers(model, prompt_ids, capacity_tokens, memory, npu,
                                          trace, prefix)
            stream = RequestStream(trace, memory, npu, prefill, model.tokenizer, sampling)
        except SecurityError:
            npu.release(trace)
            memory.failed()
            raise SecurityError() from None
        except BaseException:
            npu.release(trace)
            memory.failed()
            raise
        session.stream = stream
        return stream

    def _step(self, session: FrameworkSession, stream: RequestStream, tokens: int,
              out: TaParam) -> None:
        """One invocation's decoding; the stream leaves the session when it ends."""
        try:
            chunk = stream.step(tokens)
        finally:
            stream.pause()
            if stream.ended:
                session.stream = None
        try:
            out.set_output(chunk.encode())
        except TeeError:
            self._cancel(session)  # a chunk the client cannot take ends the request
            raise

    def _cancel(self, session: FrameworkSession) -> None:
        stream, session.stream = session.stream, None
        if stream is not None:
            stream.cancel()

    def _request_memory(self, model: OpenModel, kv_key: str | None) -> RequestMemory:
        if self.cache is None:
            return ColdMemory(self._pool(model), self._transformer(model))
        units = [(u.name, u.n_bytes) for u in model.sealed.weight_units]
        resident = self.cache.checkout(model.name, lambda: self._transformer(model), units)
        return CachedMemory(self.cache, resident, FlexMemPool(self.services), kv_key)

    def _transformer(self, model: OpenModel) -> Transformer:
        return Transformer(model.config, self.options.weight_format)

    def _pool(self, model: OpenModel) -> SecurePool:
        if self.options.memory is SecureMemoryKind.FLEXMEM:
            return FlexMemPool(self.services)
        upfront = sum(frame_rounded_bytes(u.n_bytes) for u in model.sealed.weight_units)
        return TzascPool(self.services,
                         upfront_bytes=upfront if self.options.alloc_upfront else None)

    def _stream_layers(self, model: OpenModel, prompt_ids: list[int], capacity_tokens: int,
                       memory: RequestMemory, npu: NpuHold, trace: RequestTrace,
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

    def _compute(self, prefill: StreamedPrefill, item: tuple[str, LayerTrace], npu: NpuHold,
                 trace: RequestTrace) -> None:
        name, layer = item
        before = self.meter.snapshot()
        npu.acquire(trace)
        jobs = 1 if prefill.run_group(name) and npu.held else 0
        trace.npu_jobs += jobs
        layer.stages.append(Stage(StageKind.COMPUTE, name, layer.plaintext_bytes,
                                  requests=jobs, work=self.meter.since(before)))

    def _close(self, session: FrameworkSession) -> None:
        self._cancel(session)
        if session.model is not None:
            session.model.sealed.close()
            session.model = None


def _blob_name(data: bytes) -> str:
    if not 0 < len(data) <= MAX_NAME_BYTES:
        raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP) from None


def _prompt_ids(model: OpenModel, request: GenerateRequest) -> list[int]:
    has_template = CHAT_TEMPLATE_KEY in model.meta.metadata
    if request.messages is None and (request.raw or not has_template):
        return model.tokenizer.encode(request.prompt)
    if not has_template:
        raise ConfigError("this model has no chat template to render messages with")
    from flexserve.engine.chat_template import ChatTemplate

    template = ChatTemplate.from_metadata(model.meta.metadata)
    text = template.render(request.conversation(), add_generation_prompt=True)
    return model.tokenizer.encode_prompt(text)
