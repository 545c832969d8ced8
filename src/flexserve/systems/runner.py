"""Running one request on one or more systems: real text (bundled models) and device time.

Functional paths (what produces the text):

- the secure systems run the FlexServe Framework TA on an emulated device: the sealed blob
  on flash, decryption in the secure world into Flex-Mem frames (FlexServe) or into one
  TZASC region carved out of CMA (the strawmen); CPU-only systems do not take the Flex-NPU
  (docs/systems.md);
- NW-Base runs the same engine in the normal world from the plaintext GGUF.

Time: the framework's recorded trace (or, for a shape-only model, the trace its shape
implies) is priced and scheduled for each system by :mod:`flexserve.systems.schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flexserve.catalog import CatalogEntry, ModelKind, resolve
from flexserve.catalog.servable import stored_model
from flexserve.engine.matrix import DEFAULT_WEIGHT_FORMAT, WeightFormat
from flexserve.engine.sampling import SamplingParams
from flexserve.errors import ConfigError
from flexserve.soc.constants import MIB
from flexserve.systems.config import MemoryKind, SystemConfig
from flexserve.systems.device import Device, FrameworkClient, boot_device
from flexserve.systems.plain_plan import plain_trace
from flexserve.systems.schedule import SystemTiming, time_request
from flexserve.systems.shape_plan import shape_trace
from flexserve.tee.framework import FrameworkOptions, GenerateAnswer, GenerateRequest
from flexserve.tee.framework.memory import SecureMemoryKind
from flexserve.tee.framework.request import sampling_dict
from flexserve.tee.framework.trace import RequestTrace
from flexserve.tee.sealing.store import ModelStore
from flexserve.timing.compute import ComputeUnit
from flexserve.timing.profile import DeviceProfile

#: Emulated DRAM: the model's bytes plus room for the OS, firmware and bounce buffers.
DRAM_HEADROOM_BYTES = 256 * MIB
#: A CMA region for the TZASC systems: the model plus room for block rounding per layer.
CMA_SLACK_BYTES = 64 * MIB


@dataclass(frozen=True)
class Prompt:
    text: str
    raw: bool = False
    system: str | None = None


@dataclass(frozen=True)
class SystemRun:
    system: SystemConfig
    answer: GenerateAnswer | None
    timing: SystemTiming
    trace: RequestTrace
    device: Device | None = None  # the emulated device a secure run used (for inspection)


@dataclass(frozen=True)
class SecureRun:
    answer: GenerateAnswer
    trace: RequestTrace
    device: Device


def _dram_for(entry: CatalogEntry, cma_bytes: int) -> int:
    size = entry.size_bytes + cma_bytes + DRAM_HEADROOM_BYTES
    return -(-size // (64 * MIB)) * 64 * MIB


def framework_options(system: SystemConfig, cache_bytes: int = 0,
                      weight_format: WeightFormat = DEFAULT_WEIGHT_FORMAT) -> FrameworkOptions:
    """How the framework TA runs requests for ``system`` (docs/systems.md); ``cache_bytes``
    of Flex-Mem are kept across requests if the system caches."""
    tzasc = system.memory is MemoryKind.CMA
    return FrameworkOptions(
        use_npu=system.compute is ComputeUnit.NPU,
        memory=SecureMemoryKind.TZASC if tzasc else SecureMemoryKind.FLEXMEM,
        alloc_upfront=system.alloc_upfront or not system.pipeline,
        pipeline=system.pipeline, cache_bytes=cache_bytes if system.cache else 0,
        weight_format=weight_format)


def run_secure(entry: CatalogEntry, prompt: Prompt, params: SamplingParams,
               options: FrameworkOptions, *, store: ModelStore | None = None) -> SecureRun:
    """The request through the framework TA on a fresh device; the answer and its trace."""
    if not entry.has_weights:
        raise ConfigError(f"{entry.name} is shape-only: it has no weights to run")
    store = store or ModelStore.default()
    stored = stored_model(store, str(entry.path) if entry.kind is ModelKind.FILE else entry.name)
    cma_bytes = entry.size_bytes + CMA_SLACK_BYTES \
        if options.memory is SecureMemoryKind.TZASC else 0
    device = boot_device(store.root, store.device, dram_bytes=_dram_for(entry, cma_bytes),
                         options=options, cma_bytes=cma_bytes)
    client = FrameworkClient(device)
    try:
        client.open_model(stored.path.name)
        answer = client.generate(GenerateRequest(prompt.text, prompt.raw, prompt.system,
                                                 sampling_dict(params)))
    finally:
        client.close()
    assert device.ta.last_trace is not None
    return SecureRun(answer, device.ta.last_trace, device)


def run_plain(path: Path, prompt: Prompt, params: SamplingParams) -> GenerateAnswer:
    """NW-Base's functional path: the engine in the normal world, plaintext weights."""
    from flexserve.commands.generate import prompt_ids
    from flexserve.engine.generate import Generator
    from flexserve.engine.loader import load_model

    loaded = load_model(path)
    ids = prompt_ids(loaded, prompt.text, prompt.raw, prompt.system)
    result = Generator(loaded.transformer, loaded.tokenizer).generate(ids, params)
    return GenerateAnswer(result.text, result.finish_reason, result.n_prompt_tokens,
                          result.n_generated_tokens)


def run_systems(model: str, systems: list[SystemConfig], profile: DeviceProfile,
                prompt: Prompt | None, params: SamplingParams, *,
                prompt_tokens: int | None = None) -> list[SystemRun]:
    """Run the request on each system: text where the model has weights, time always."""
    entry = resolve(model)
    if not entry.has_weights:
        return _shape_only(entry, systems, profile, params, prompt_tokens)
    if prompt is None:
        raise ConfigError("a model with weights needs a prompt")
    done: dict[FrameworkOptions | None, SystemRun] = {}
    runs = []
    for system in systems:
        key = framework_options(system) if system.secure else None
        if key not in done:
            done[key] = _functional(entry, system, prompt, params)
        first = done[key]
        timing = time_request(first.trace, system, profile)
        runs.append(SystemRun(system, first.answer, timing, first.trace, first.device))
    return runs


def _functional(entry: CatalogEntry, system: SystemConfig, prompt: Prompt,
                params: SamplingParams) -> SystemRun:
    """One functional run; its timing field is filled by the caller per system."""
    if system.secure:
        run = run_secure(entry, prompt, params, framework_options(system))
        return SystemRun(system, run.answer, _no_timing(system), run.trace, run.device)
    if entry.path is None:
        raise ConfigError(f"{entry.name} is imported: its weights exist only sealed for the "
                          f"device, so {system.label} (plaintext in the normal world) cannot "
                          f"run it; choose a secure --system")
    answer = run_plain(entry.path, prompt, params)
    trace = plain_trace(entry.path, answer.prompt_tokens, answer.completion_tokens)
    return SystemRun(system, answer, _no_timing(system), trace)


def _no_timing(system: SystemConfig) -> SystemTiming:
    return SystemTiming(system.name, system.label, 0.0, {}, 0.0, (), {}, "", 0.0)


def _shape_only(entry: CatalogEntry, systems: list[SystemConfig], profile: DeviceProfile,
                params: SamplingParams, prompt_tokens: int | None) -> list[SystemRun]:
    if prompt_tokens is None or prompt_tokens < 1:
        raise ConfigError(f"{entry.name} is shape-only: give --prompt-tokens N (N >= 1)")
    assert entry.shape is not None
    trace = shape_trace(entry.shape, prompt_tokens, params.max_tokens)
    return [SystemRun(s, None, time_request(trace, s, profile), trace) for s in systems]

