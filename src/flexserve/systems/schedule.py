"""The request as a task graph on the device clock, and its modeled TTFT.

Per layer ``i`` the restore chain is ``alloc -> load (flash) -> copy -> decrypt``, then
``compute``. With the pipeline only in-layer order (and the order of the computes) is a
dependency, so layer ``i+1`` restores while layer ``i`` computes; restore work carries
priority ``i`` so the earliest pending compute is fed first (TZ-LLM). Without it every stage
is a barrier: init, allocation of the whole model, all loads, all decryption, then compute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flexserve.engine.config import ModelConfig
from flexserve.errors import ConfigError
from flexserve.systems import pricing
from flexserve.systems.config import MemoryKind, SystemConfig
from flexserve.tee.framework.trace import LayerTrace, RequestTrace, StageKind
from flexserve.timing import costs
from flexserve.timing.compute import ComputeUnit
from flexserve.timing.sim import CPU, FLASH, NPU, DeviceSim, Event, Task, run_dag
from flexserve.timing.trace import busiest_resource_bound, ttft_breakdown

INIT = "init"
HANDOVER = "npu-handover"
ALLOC_ALL = "alloc:model"


@dataclass(frozen=True)
class SystemTiming:
    """Modeled device time of one request on one system."""

    system: str
    label: str
    ttft_s: float
    breakdown: Mapping[str, float]
    decode_tokens_per_s: float
    log: tuple[Event, ...]
    capacities: Mapping[str, int]
    bound_resource: str
    bound_s: float


class _Graph:
    def __init__(self, trace: RequestTrace, system: SystemConfig, profile) -> None:
        if trace.shape is None:
            raise ConfigError("the trace carries no model shape to price compute with")
        self.trace, self.system, self.profile = trace, system, profile
        self.shape: ModelConfig = trace.shape
        self.sizes = pricing.layer_shapes(self.shape)
        self.tasks: list[Task] = []

    def add(self, name: str, resource: str, duration_s: float, category: str,
            deps: tuple[str, ...] = (), priority: int = 0, shards: int = 1,
            dram_bytes: int = 0) -> str:
        self.tasks.append(Task(name, resource, duration_s, deps, priority, shards, dram_bytes,
                               category, {"category": category}))
        return name

    # ----- the pieces -----
    def init(self) -> tuple[str, ...]:
        """The framework start, if this request opened the model (else nothing)."""
        if not self.trace.init_stages:
            return ()
        start = costs.framework_start_s(self.profile,
                                        from_checkpoint=self.system.framework_from_checkpoint)
        return (self.add(INIT, CPU, start, "init"),)

    def kv_restore(self) -> tuple[str, ...]:
        """Reading back and decrypting a written-back KV cache, before the first compute."""
        n_bytes = self.trace.kv_restored_bytes
        if not n_bytes:
            return ()
        flash_s, decrypt_s = pricing.kv_restore_s(n_bytes, self.profile)
        read = self.add("load:kv", FLASH, flash_s, "io", dram_bytes=n_bytes)
        return (self.add("decrypt:kv", CPU, decrypt_s, "decrypt", (read,),
                         dram_bytes=costs.crypto_traffic_bytes(n_bytes)),)

    def restored_layers(self) -> list[tuple[int, LayerTrace]]:
        """Layers this request had to bring into secure memory (not already resident)."""
        return [(i, layer) for i, layer in enumerate(self.trace.layers) if not layer.resident]

    def handover(self, deps: tuple[str, ...]) -> tuple[str, ...]:
        duration = pricing.npu_handover_s(self.system, self.profile)
        if duration == 0:
            return deps
        return (self.add(HANDOVER, NPU, duration, "other", deps),)

    def alloc_all(self, deps: tuple[str, ...]) -> tuple[str, ...]:
        pages = sum(_stage(layer, StageKind.ALLOC).pages for _, layer in self.restored_layers())
        if not pages:
            return deps
        return (self.add(ALLOC_ALL, CPU, pricing.alloc_s(pages, self.system, self.profile),
                         "alloc", deps),)

    def alloc(self, layer: LayerTrace, deps: tuple[str, ...], priority: int) -> str:
        stage = _stage(layer, StageKind.ALLOC)
        duration = pricing.alloc_s(stage.pages, self.system, self.profile, stage)
        return self.add(f"alloc:{layer.name}", CPU, duration, "alloc", deps, priority)

    def load(self, layer: LayerTrace, deps: tuple[str, ...], priority: int) -> str:
        stage = _stage(layer, StageKind.IO)
        flash = pricing.flash_s(stage, self.system, layer.plaintext_bytes, self.profile)
        last = self.add(f"load:{layer.name}", FLASH, flash, "io", deps, priority,
                        dram_bytes=stage.n_bytes)
        copy = pricing.bounce_copy_s(stage, self.system, self.profile)
        if copy:
            last = self.add(f"copy:{layer.name}", CPU, copy, "io", (last,), priority,
                            dram_bytes=2 * stage.n_bytes)
        return last

    def decrypt(self, layer: LayerTrace, deps: tuple[str, ...], priority: int) -> str:
        stage = _stage(layer, StageKind.DECRYPT)
        return self.add(f"decrypt:{layer.name}", CPU, pricing.decrypt_s(stage, self.profile),
                        "decrypt", deps, priority, shards=self.system.decrypt_cores,
                        dram_bytes=costs.crypto_traffic_bytes(stage.n_bytes))

    def compute(self, layer: LayerTrace, deps: tuple[str, ...]) -> str:
        size = self.sizes[layer.name]
        reused = self.trace.reused_prompt_tokens
        duration = pricing.prefill_s(self.shape, size, self.trace.prompt_tokens - reused,
                                     self.system, self.profile, context_tokens=reused)
        on_cpu = self.system.compute is ComputeUnit.CPU
        return self.add(f"compute:{layer.name}", CPU if on_cpu else NPU, duration, "compute",
                        deps, shards=self.profile.cpu.big_cores if on_cpu else 1)


def _stage(layer: LayerTrace, kind: StageKind):
    stage = layer.stage(kind)
    if stage is None:
        raise ConfigError(f"layer {layer.name} has no {kind} stage in the trace")
    return stage


def _pipelined(g: _Graph) -> None:
    ready = g.handover(g.init()) + g.kv_restore()
    previous: tuple[str, ...] = ()
    whole = g.alloc_all(()) if g.system.alloc_upfront else ()
    allocated: tuple[str, ...] = ()  # one allocating thread: CMA and rsmem_alloc calls queue
    for i, layer in enumerate(g.trace.layers):
        restored: tuple[str, ...] = ()
        if not layer.resident:
            allocated = whole or (g.alloc(layer, allocated, i),)
            restored = (g.load(layer, allocated, i),)
            if g.system.secure:
                restored = (g.decrypt(layer, restored, i),)
        previous = (g.compute(layer, (*restored, *ready, *previous)),)


def _staged(g: _Graph) -> None:
    init = g.init()
    todo = g.restored_layers()
    if g.system.memory is MemoryKind.FLEXMEM:
        allocs = init
        for i, layer in todo:
            allocs = (g.alloc(layer, allocs, i),)
    else:
        allocs = g.alloc_all(init)
    loads = tuple(g.load(layer, allocs, i) for i, layer in todo)
    restored = loads
    if g.system.secure:
        restored = tuple(g.decrypt(layer, loads, i) for i, layer in todo)
    previous = g.handover(restored or allocs) + g.kv_restore()
    for layer in g.trace.layers:
        previous = (g.compute(layer, previous),)


def build_tasks(trace: RequestTrace, system: SystemConfig, profile) -> list[Task]:
    """The task graph of ``trace`` run by ``system`` (see the module docstring)."""
    graph = _Graph(trace, system, profile)
    (_pipelined if system.pipeline else _staged)(graph)
    return graph.tasks


def time_request(trace: RequestTrace, system: SystemConfig, profile,
                 decode_tokens: int | None = None) -> SystemTiming:
    """Run the graph on a fresh device clock: TTFT, its breakdown, decode rate, the log."""
    sim = DeviceSim(profile)
    result = run_dag(sim, build_tasks(trace, system, profile))
    bound_resource, bound_s = busiest_resource_bound(result.log, sim.capacities)
    assert trace.shape is not None
    tokens = trace.generated_tokens if decode_tokens is None else decode_tokens
    rate = pricing.decode_tokens_per_s(trace.shape, trace.prompt_tokens, tokens, system, profile)
    return SystemTiming(system.name, system.label, result.makespan_s,
                        ttft_breakdown(result.log, start_s=0.0, end_s=result.makespan_s),
                        rate, result.log, dict(sim.capacities), bound_resource, bound_s)
