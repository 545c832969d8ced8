"""System MMU: every DMA master's accesses are translated and checked per stream.

Design choice [ours]: normal-world streams share the CPU's stage-2 regime object (the
SMMU walks the same S2PT, the way SMMUv3 can share a VMID's stage-2 tables), so the DMA
view mirrors the CPU view by construction and stage-2-off bypasses both. Secure streams
get a context the monitor programs (the Flex-Mem frames of the current owner).
"""

from __future__ import annotations

import enum
from typing import Protocol

import numpy as np

from flexserve.errors import DMAFault, HardwareFault
from flexserve.soc.access import Access, World
from flexserve.soc.bus import PhysicalBus


class StreamId(enum.IntEnum):
    """SMMU stream ids of the bus masters."""

    NPU = 1
    FLASH = 2
    GENERIC_DMA = 3


class DmaContext(Protocol):
    """A translation a stream's transactions go through."""

    def translate_range(self, iova: int, size_bytes: int, access: Access) -> np.ndarray: ...


class StreamConfig:
    """One stream table entry: its context and the security state of its transactions."""

    def __init__(self, context: DmaContext | None, world: World) -> None:
        self.context = context
        self.world = world


class Smmu:
    """Stream table; programming entries is reserved to the monitor."""

    def __init__(self, bus: PhysicalBus) -> None:
        self.bus = bus
        self.streams: dict[StreamId, StreamConfig] = {}
        self.tlb_invalidations = 0

    def configure(self, stream: StreamId, context: DmaContext | None, world: World) -> None:
        self.streams[stream] = StreamConfig(context, world)
        self.invalidate_tlb()

    def invalidate_tlb(self) -> int:
        self.tlb_invalidations += 1
        return 1

    def world_of(self, stream: StreamId) -> World:
        return self.streams[stream].world

    def translate(self, stream: StreamId, iova: int, size_bytes: int,
                  access: Access) -> np.ndarray:
        """DRAM pages the transaction touches, or :class:`DMAFault`."""
        config = self.streams.get(stream)
        if config is None or config.context is None:
            raise DMAFault(f"stream {stream.name}: no context (stream disabled)")
        try:
            pa_pages = config.context.translate_range(iova, size_bytes, access)
            self.bus.check(pa_pages, config.world)
        except HardwareFault as fault:
            raise DMAFault(f"stream {stream.name}: {fault}") from fault
        if not np.all(self.bus.is_dram(pa_pages)):
            raise DMAFault(f"stream {stream.name}: DMA to a device window")
        return pa_pages
