"""Where a layer's plaintext lives in the secure world: Flex-Mem or a TZASC region.

Two pools with one interface, chosen by the device's configuration (docs/systems.md):

- :class:`FlexMemPool` (FlexServe): one ``rsmem_alloc`` per layer, page-granular, any frames;
- :class:`TzascPool` (the strawman designs): one physically contiguous CMA range made secure
  as a single TZASC region, either for the whole model at the first layer (``upfront``) or
  grown in place, whole CMA blocks at a time, when the next layer does not fit.

A pool hands out :class:`LayerSpan`s: a sink the decryption writes verified plaintext into
and a read-back of the bytes the engine builds weights from. ``release_all`` scrubs and
returns everything (the monitor zeroes TZASC regions on release).
"""

from __future__ import annotations

import enum
from typing import Protocol

import numpy as np

from flexserve.errors import ConfigError
from flexserve.soc.constants import FRAME_SIZE_BYTES
from flexserve.tee.framework.frames import FrameSink, read_back
from flexserve.tee.trusted_os import ContiguousAllocation, SecureAllocation, TaServices


class SecureMemoryKind(enum.StrEnum):
    FLEXMEM = "flexmem"
    TZASC = "tzasc"


def _pages(n_bytes: int) -> int:
    return -(-n_bytes // FRAME_SIZE_BYTES)


class LayerSpan(Protocol):
    pages: int

    def sink(self): ...

    def read(self, n_bytes: int) -> np.ndarray: ...


class SecurePool(Protocol):
    def allocate(self, n_bytes: int, name: str) -> LayerSpan: ...

    def release_all(self) -> None: ...

    @property
    def frames(self) -> int: ...


class _FlexSpan:
    def __init__(self, services: TaServices, allocation: SecureAllocation) -> None:
        self.services, self.allocation = services, allocation
        self.pages = int(allocation.frames.size)

    def sink(self) -> FrameSink:
        return FrameSink(self.services.port, self.services.owner, self.allocation.frames)

    def read(self, n_bytes: int) -> np.ndarray:
        return read_back(self.services.port, self.services.owner, self.allocation.frames,
                         n_bytes)


class FlexMemPool:
    """One Flex-Mem allocation per layer (``rsmem_alloc`` through the trusted OS)."""

    def __init__(self, services: TaServices) -> None:
        self.services = services
        self.by_name: dict[str, SecureAllocation] = {}

    @property
    def allocations(self) -> list[SecureAllocation]:
        return list(self.by_name.values())

    @property
    def frames(self) -> int:
        return sum(int(a.frames.size) for a in self.by_name.values())

    def allocate(self, n_bytes: int, name: str) -> _FlexSpan:
        if name in self.by_name:
            raise ConfigError(f"layer {name} is already allocated in this pool")
        allocation = self.services.alloc_secure(n_bytes)
        self.by_name[name] = allocation
        return _FlexSpan(self.services, allocation)

    def take_all(self) -> dict[str, SecureAllocation]:
        """Hand every allocation over to the caller (e.g. the model cache), by layer name."""
        taken, self.by_name = self.by_name, {}
        return taken

    def release_all(self) -> None:
        """Scrub, unmap and return every frame (``free_secure``), newest first."""
        for name in reversed(list(self.by_name)):
            self.services.free_secure(self.by_name.pop(name))


class _TzascSink:
    """Frame-aligned writes into consecutive frames of a TZASC region."""

    def __init__(self, services: TaServices, first_frame: int, pages: int) -> None:
        self.services, self.first_frame, self.pages = services, first_frame, pages

    @property
    def size_bytes(self) -> int:
        return self.pages * FRAME_SIZE_BYTES

    def write(self, offset: int, data: bytes) -> None:
        if offset % FRAME_SIZE_BYTES or not data or offset + len(data) > self.size_bytes:
            raise ConfigError("TZASC writes are frame-aligned and inside the layer")
        count = _pages(len(data))
        block = np.zeros(count * FRAME_SIZE_BYTES, dtype=np.uint8)
        block[: len(data)] = np.frombuffer(data, dtype=np.uint8)
        self.services.port.tzasc_write_frames(self.first_frame + offset // FRAME_SIZE_BYTES,
                                              block.reshape(count, FRAME_SIZE_BYTES))


class _TzascSpan:
    def __init__(self, services: TaServices, first_frame: int, pages: int) -> None:
        self.services, self.first_frame, self.pages = services, first_frame, pages

    def sink(self) -> _TzascSink:
        return _TzascSink(self.services, self.first_frame, self.pages)

    def read(self, n_bytes: int) -> np.ndarray:
        data = self.services.port.tzasc_read_frames(self.first_frame, self.pages)
        return data.reshape(-1)[:n_bytes]


class TzascPool:
    """Layers packed into one contiguous TZASC region, allocated whole or grown per layer."""

    def __init__(self, services: TaServices, *, upfront_bytes: int | None = None) -> None:
        self.services, self.upfront_bytes = services, upfront_bytes
        self.region: ContiguousAllocation | None = None
        self.used_pages = 0

    @property
    def frames(self) -> int:
        return self.region.frame_count if self.region is not None else 0

    def allocate(self, n_bytes: int, name: str = "") -> _TzascSpan:
        pages = _pages(n_bytes)
        self._make_room(pages)
        assert self.region is not None
        span = _TzascSpan(self.services, self.region.base_frame + self.used_pages, pages)
        self.used_pages += pages
        return span

    def _make_room(self, pages: int) -> None:
        if self.region is None:
            size = self.upfront_bytes if self.upfront_bytes is not None \
                else pages * FRAME_SIZE_BYTES
            self.region = self.services.alloc_contiguous(max(size, pages * FRAME_SIZE_BYTES))
        short_pages = self.used_pages + pages - self.region.frame_count
        if short_pages > 0:
            self.services.grow_contiguous(self.region, short_pages * FRAME_SIZE_BYTES)

    def release_all(self) -> None:
        if self.region is not None:
            region, self.region, self.used_pages = self.region, None, 0
            self.services.free_contiguous(region)
