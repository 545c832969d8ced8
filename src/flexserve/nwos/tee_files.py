"""TEE file service: the normal world reads flash files for the secure side.

The secure side cannot be reached by normal-world DMA (Flex-Mem frames are gone from the
stage-2 table the SMMU shares), so the service DMAs file bytes from flash into ordinary
kernel pages (a shared bounce buffer) and tells the secure side where they are; the trusted
OS copies them out (``read_shared``) and verifies/decrypts its private copy. The bytes it
carries are ciphertext: the service is untrusted and everything it does is checked later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flexserve.errors import ConfigError
from flexserve.monitor.platform import NormalWorld
from flexserve.nwos.kernel import NormalWorldKernel
from flexserve.nwos.owners import KERNEL_OWNER
from flexserve.nwos.page import PAGE_SIZE_BYTES, PageKind, pages_for_bytes
from flexserve.soc.work import WorkRecord


@dataclass(frozen=True)
class SharedBuffer:
    """File bytes in normal pages: page ``i`` holds bytes ``[i*4096, (i+1)*4096)``."""

    ipa_pages: np.ndarray
    size_bytes: int

    def runs(self) -> list[tuple[int, int, int]]:
        """``(buffer_offset, ipa, size_bytes)`` of each physically consecutive run."""
        pages = self.ipa_pages
        breaks = np.flatnonzero(np.diff(pages) != 1) + 1
        out = []
        for first, last in zip(np.r_[0, breaks], np.r_[breaks, pages.size], strict=True):
            offset = int(first) * PAGE_SIZE_BYTES
            size = min(int(last - first) * PAGE_SIZE_BYTES, self.size_bytes - offset)
            out.append((offset, int(pages[first]) * PAGE_SIZE_BYTES, size))
        return out


class TeeFileService:
    def __init__(self, kernel: NormalWorldKernel, normal: NormalWorld) -> None:
        self.kernel, self.normal = kernel, normal
        self.work = WorkRecord()

    def file_size(self, name: str) -> int:
        return self.normal.storage.file_size(name)

    def read(self, name: str, offset: int, size_bytes: int) -> SharedBuffer:
        """DMA ``size_bytes`` of ``name`` from ``offset`` into fresh kernel pages."""
        if size_bytes <= 0 or offset < 0:
            raise ConfigError("file read needs offset >= 0 and size > 0")
        pfns = np.sort(self.kernel.alloc(KERNEL_OWNER, PageKind.KERNEL,
                                         pages_for_bytes(size_bytes)))
        buffer = SharedBuffer(pfns, size_bytes)
        try:
            for buf_offset, ipa, size in buffer.runs():  # one DMA per contiguous run
                self.work += self.normal.flash.read_to_memory(name, offset + buf_offset,
                                                              ipa, size)
        except Exception:
            self.kernel.free(pfns)
            raise
        return buffer

    def release(self, buffer: SharedBuffer) -> None:
        self.kernel.free(buffer.ipa_pages)

    # ----- writes (encrypted KV caches written back by the secure side) -----
    def buffer(self, size_bytes: int) -> SharedBuffer:
        """Fresh kernel pages the secure side fills (with ciphertext) before :meth:`write`."""
        if size_bytes <= 0:
            raise ConfigError("a write buffer needs size > 0")
        pfns = np.sort(self.kernel.alloc(KERNEL_OWNER, PageKind.KERNEL,
                                         pages_for_bytes(size_bytes)))
        return SharedBuffer(pfns, size_bytes)

    def write(self, name: str, buffer: SharedBuffer) -> None:
        """DMA the buffer into a new file ``name`` (replacing it), then free the pages."""
        try:
            self.normal.storage.write_file(name, b"")
            for buf_offset, ipa, size in buffer.runs():
                self.work += self.normal.flash.write_from_memory(name, buf_offset, ipa, size)
        finally:
            self.kernel.free(buffer.ipa_pages)

    def delete(self, name: str) -> None:
        if self.normal.storage.exists(name):
            self.normal.storage.delete(name)
