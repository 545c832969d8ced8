"""The physical bus: routes physical pages to DRAM or to a device's MMIO window.

Every non-secure transaction is filtered by the TZASC before it reaches DRAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from flexserve.errors import HardwareFault
from flexserve.soc.access import World
from flexserve.soc.constants import FRAME_SHIFT, byte_segments
from flexserve.soc.memory import PhysicalMemory
from flexserve.soc.tzasc import Tzasc


class MmioDevice(Protocol):
    """A device register window of whole pages."""

    mmio_page_count: int

    def mmio_read(self, offset: int, size_bytes: int) -> bytes: ...

    def mmio_write(self, offset: int, data: bytes) -> None: ...


@dataclass(frozen=True)
class MmioWindow:
    base_page: int
    device: MmioDevice

    @property
    def end_page(self) -> int:
        return self.base_page + self.device.mmio_page_count


class PhysicalBus:
    """DRAM at pages ``[0, dram_frames)``, device windows above it."""

    def __init__(self, memory: PhysicalMemory, tzasc: Tzasc) -> None:
        self.memory = memory
        self.tzasc = tzasc
        self.windows: list[MmioWindow] = []

    def attach(self, base_page: int, device: MmioDevice) -> MmioWindow:
        if base_page < self.memory.frame_count:
            raise HardwareFault("MMIO window overlaps DRAM")
        window = MmioWindow(base_page, device)
        for other in self.windows:
            if window.base_page < other.end_page and other.base_page < window.end_page:
                raise HardwareFault("MMIO windows overlap")
        self.windows.append(window)
        return window

    @property
    def page_limit(self) -> int:
        """One past the highest decoded physical page."""
        return max([self.memory.frame_count] + [w.end_page for w in self.windows])

    def _window_for(self, page: int) -> MmioWindow | None:
        for window in self.windows:
            if window.base_page <= page < window.end_page:
                return window
        return None

    def is_dram(self, pa_pages: np.ndarray) -> np.ndarray:
        pa_pages = np.asarray(pa_pages, dtype=np.int64)
        return (pa_pages >= 0) & (pa_pages < self.memory.frame_count)

    def check(self, pa_pages: np.ndarray, world: World) -> None:
        """Decode check plus TZASC filter for a batch of physical pages."""
        pa_pages = np.asarray(pa_pages, dtype=np.int64)
        dram = self.is_dram(pa_pages)
        for page in np.unique(pa_pages[~dram]).tolist():
            if self._window_for(page) is None:
                raise HardwareFault("bus error: nothing decodes this address")
        if world is World.NORMAL:
            self.tzasc.check_nonsecure(pa_pages[dram])

    def read(self, pa: int, size_bytes: int, world: World) -> bytes:
        out = bytearray()
        for page, offset, chunk in byte_segments(pa, size_bytes):
            out += self._read_page(page, offset, chunk, world)
        return bytes(out)

    def write(self, pa: int, data: bytes, world: World) -> None:
        pos = 0
        for page, offset, chunk in byte_segments(pa, len(data)):
            self._write_page(page, offset, data[pos:pos + chunk], world)
            pos += chunk

    def _read_page(self, page: int, offset: int, size_bytes: int, world: World) -> bytes:
        self.check(np.array([page]), world)
        if page < self.memory.frame_count:
            return self.memory.read_in_frame(page, offset, size_bytes)
        window = self._window_for(page)
        assert window is not None
        return window.device.mmio_read(self._mmio_offset(window, page, offset), size_bytes)

    def _write_page(self, page: int, offset: int, data: bytes, world: World) -> None:
        self.check(np.array([page]), world)
        if page < self.memory.frame_count:
            self.memory.write_in_frame(page, offset, data)
            return
        window = self._window_for(page)
        assert window is not None
        window.device.mmio_write(self._mmio_offset(window, page, offset), data)

    @staticmethod
    def _mmio_offset(window: MmioWindow, page: int, offset: int) -> int:
        return ((page - window.base_page) << FRAME_SHIFT) + offset

