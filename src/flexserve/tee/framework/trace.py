"""The request trace: what every pipeline stage of every layer did, in countable units.

The framework records, per layer (``embed``, ``blk.<i>``, ``output``), one :class:`Stage`
per step it ran (alloc, io, decrypt, init, compute) with the work records the mechanisms
reported and the bytes involved. The timing side (``flexserve.systems.timing``) prices these
counts; nothing here knows about time.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from flexserve.engine.config import ModelConfig
from flexserve.soc.work import WorkRecord


class StageKind(enum.StrEnum):
    ALLOC = "alloc"
    IO = "io"
    DECRYPT = "decrypt"
    INIT = "init"
    COMPUTE = "compute"


#: Sources of work a stage may carry: the normal-world kernel's page allocator, the monitor
#: calls made on the secure side's behalf (FLEXMEM_PROTECT/RELEASE), the secure port (copies,
#: mappings, NPU switches) and the TEE file service (flash DMA).
WorkBySource = Mapping[str, WorkRecord]


@dataclass(frozen=True)
class Stage:
    """One step of one layer: its kind, the bytes it handled, the work it reported."""

    kind: StageKind
    layer: str
    n_bytes: int = 0
    pages: int = 0
    requests: int = 0
    work: WorkBySource = field(default_factory=dict)

    def total_work(self) -> WorkRecord:
        total = WorkRecord()
        for record in self.work.values():
            total += record
        return total


@dataclass
class LayerTrace:
    """The stages of one layer (a sealed unit / engine layer group), in the order they ran."""

    name: str
    index: int
    plaintext_bytes: int
    ciphertext_bytes: int
    chunks: int
    stages: list[Stage] = field(default_factory=list)

    @property
    def resident(self) -> bool:
        """True when the layer was already in secure memory (no allocation, no restore)."""
        return self.stage(StageKind.ALLOC) is None

    def stage(self, kind: StageKind) -> Stage | None:
        return next((s for s in self.stages if s.kind is kind), None)

    def bytes_of(self, kind: StageKind) -> int:
        return sum(s.n_bytes for s in self.stages if s.kind is kind)


@dataclass
class RequestTrace:
    """Everything one model load plus one request did; the input of the timing model."""

    model: str
    shape: ModelConfig | None = None
    layers: list[LayerTrace] = field(default_factory=list)
    init_stages: list[Stage] = field(default_factory=list)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    npu_mode_switches: int = 0
    npu_jobs: int = 0
    reused_prompt_tokens: int = 0  # leading prompt tokens whose KV came from a kept cache
    kv_restored_bytes: int = 0  # ciphertext of a written-back KV cache read back first

    def layer(self, name: str) -> LayerTrace:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def bytes_of(self, kind: StageKind) -> int:
        return sum(layer.bytes_of(kind) for layer in self.layers)

    @property
    def plaintext_bytes(self) -> int:
        return sum(layer.plaintext_bytes for layer in self.layers)
