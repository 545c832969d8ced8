"""DMA masters: move bytes between memory and a device, every page checked by the SMMU."""

from __future__ import annotations

import numpy as np

from flexserve.soc.access import Access
from flexserve.soc.bus import PhysicalBus
from flexserve.soc.constants import physical_runs
from flexserve.soc.memory import BackingMode
from flexserve.soc.smmu import Smmu, StreamId
from flexserve.soc.work import WorkRecord


class DmaMaster:
    """A bus master with one stream id. Addresses it is given are IOVAs."""

    def __init__(self, stream: StreamId, smmu: Smmu, bus: PhysicalBus) -> None:
        self.stream = stream
        self.smmu = smmu
        self.bus = bus
        self.work = WorkRecord()

    @property
    def timing_only(self) -> bool:
        return self.bus.memory.backing is BackingMode.TIMING_ONLY

    def check(self, iova: int, size_bytes: int, access: Access) -> np.ndarray:
        """Translate without transferring; returns the DRAM pages."""
        return self.smmu.translate(self.stream, iova, size_bytes, access)

    def read(self, iova: int, size_bytes: int) -> bytes:
        """Read ``size_bytes`` from memory at ``iova``."""
        pa_pages = self.check(iova, size_bytes, Access.READ)
        world = self.smmu.world_of(self.stream)
        out = bytearray()
        for pa, chunk in physical_runs(pa_pages, iova, size_bytes):
            out += self.bus.read(pa, chunk, world)
        self._count(size_bytes, pa_pages)
        return bytes(out)

    def write(self, iova: int, data: bytes) -> WorkRecord:
        """Write ``data`` to memory at ``iova``."""
        pa_pages = self.check(iova, len(data), Access.WRITE)
        world = self.smmu.world_of(self.stream)
        pos = 0
        for pa, chunk in physical_runs(pa_pages, iova, len(data)):
            self.bus.write(pa, bytes(data[pos:pos + chunk]), world)
            pos += chunk
        return self._count(len(data), pa_pages)

    def write_metadata(self, iova: int, size_bytes: int) -> WorkRecord:
        """Timing-only write: check and account, mark frames written, move no bytes."""
        pa_pages = self.check(iova, size_bytes, Access.WRITE)
        self.bus.memory.mark_written(pa_pages)
        return self._count(size_bytes, pa_pages)

    def read_metadata(self, iova: int, size_bytes: int) -> WorkRecord:
        """Timing-only read: check and account, move no bytes."""
        pa_pages = self.check(iova, size_bytes, Access.READ)
        return self._count(size_bytes, pa_pages)

    def copy(self, src_iova: int, dst_iova: int, size_bytes: int) -> WorkRecord:
        """Memory-to-memory copy (generic DMA engine)."""
        self.check(dst_iova, size_bytes, Access.WRITE)
        if self.timing_only:
            self.read_metadata(src_iova, size_bytes)
            return self.write_metadata(dst_iova, size_bytes)
        return self.write(dst_iova, self.read(src_iova, size_bytes))

    def _count(self, size_bytes: int, pa_pages: np.ndarray) -> WorkRecord:
        record = WorkRecord(bytes_dma=size_bytes, frames_touched=int(pa_pages.size))
        self.work += record
        return record
