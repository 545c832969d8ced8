"""The paper's four systems as settings of one pipeline (choices in docs/systems.md).

- **NW-Base**: unprotected inference in the normal world: ordinary pages, plaintext weights
  read from flash, no decryption, the NPU, llama.cpp's load-then-compute order.
- **Strawman**: inference in TrustZone: contiguous secure memory (CMA + TZASC) for the whole
  model allocated up front, the whole model loaded and decrypted before compute, CPU only.
- **Strawman-OPT**: Strawman plus the per-layer pipeline and a secure NPU (handed over by
  re-initialising its driver, as a static assignment needs); memory is still CMA + TZASC.
- **FlexServe**: Flex-Mem (page-granular ``rsmem_alloc``), Flex-NPU (a mode switch of the reused
  normal-world driver) and the pipeline.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from flexserve.errors import ConfigError
from flexserve.timing.compute import ComputeUnit


class MemoryKind(enum.StrEnum):
    NORMAL = "normal"  # buddy pages of the normal world, unprotected
    CMA = "cma"  # contiguous CMA region made secure with a TZASC region
    FLEXMEM = "flexmem"  # page-granular Flex-Mem through rsmem_alloc


class NpuHandover(enum.StrEnum):
    NONE = "none"  # the NPU stays in the normal world (NW-Base) or is not used
    REINIT = "reinit"  # detach/attach the driver (npu.control_plane_reinit_s per direction)
    FLEX_NPU = "flex-npu"  # Flex-NPU mode switch (npu.mode_switch_s per direction)


@dataclass(frozen=True)
class SystemConfig:
    """How one system runs a request. Every field is a documented, changeable choice."""

    name: str
    label: str
    secure: bool
    memory: MemoryKind
    pipeline: bool
    compute: ComputeUnit
    npu_handover: NpuHandover = NpuHandover.NONE
    framework_from_checkpoint: bool = False
    alloc_upfront: bool = False
    decrypt_cores: int = 4
    cma_occupied_fraction: float = 1.0
    cma_threads: int = 1
    npu_jobs_per_layer: int = 1
    cache: bool = False  # keeps weights in secure memory across requests (Flex-Mem only)

    def __post_init__(self) -> None:
        if not 0.0 <= self.cma_occupied_fraction <= 1.0:
            raise ConfigError("cma_occupied_fraction must be in [0, 1]")
        if self.decrypt_cores < 1 or self.cma_threads < 1 or self.npu_jobs_per_layer < 0:
            raise ConfigError("decrypt_cores and cma_threads must be >= 1")
        if self.compute is ComputeUnit.CPU and self.npu_handover is not NpuHandover.NONE:
            raise ConfigError("a CPU-only system has no NPU to hand over")
        if self.cache and self.memory is not MemoryKind.FLEXMEM:
            raise ConfigError("only a Flex-Mem system can cache across requests")

    def with_options(self, **changes: object) -> SystemConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


NW_BASE = SystemConfig("nw-base", "NW-Base", secure=False, memory=MemoryKind.NORMAL,
                       pipeline=False, compute=ComputeUnit.NPU)
STRAWMAN = SystemConfig("strawman", "Strawman", secure=True, memory=MemoryKind.CMA,
                        pipeline=False, compute=ComputeUnit.CPU)
STRAWMAN_OPT = SystemConfig("strawman-opt", "Strawman-OPT", secure=True, memory=MemoryKind.CMA,
                            pipeline=True, compute=ComputeUnit.NPU,
                            npu_handover=NpuHandover.REINIT)
FLEXSERVE = SystemConfig("flexserve", "FlexServe", secure=True, memory=MemoryKind.FLEXMEM,
                         pipeline=True, compute=ComputeUnit.NPU,
                         npu_handover=NpuHandover.FLEX_NPU, cache=True)

SYSTEMS: dict[str, SystemConfig] = {s.name: s for s in (NW_BASE, STRAWMAN, STRAWMAN_OPT,
                                                         FLEXSERVE)}


def system(name: str) -> SystemConfig:
    try:
        return SYSTEMS[name]
    except KeyError:
        raise ConfigError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}") from None
