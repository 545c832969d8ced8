"""Flash storage backed by a host directory, and its DMA-capable controller.

The normal world owns the file system: it may read, modify, replace or roll back any file
(the attacker model). Moving file bytes into memory is a DMA through the SMMU with the
flash controller's stream id, so it can only land where the normal world's view allows.
"""

from __future__ import annotations

from pathlib import Path

from flexserve.errors import ConfigError, HardwareFault
from flexserve.soc.access import Access
from flexserve.soc.dma import DmaMaster
from flexserve.soc.work import WorkRecord


class FlashStorage:
    """Named files under ``root``; names are relative paths that stay inside ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        candidate = (self.root / name).resolve()
        if candidate == self.root or self.root not in candidate.parents:
            raise ConfigError(f"flash file name escapes the storage root: {name!r}")
        return candidate

    def write_file(self, name: str, data: bytes) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def create_sparse(self, name: str, size_bytes: int) -> None:
        """A file of ``size_bytes`` zero bytes that costs no host disk (timing-only models)."""
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            handle.truncate(size_bytes)

    def extend(self, name: str, size_bytes: int) -> None:
        """Grow a file (sparsely) to at least ``size_bytes``; creates it if missing."""
        target = self.path(name)
        if not target.exists():
            self.create_sparse(name, size_bytes)
        elif target.stat().st_size < size_bytes:
            with target.open("r+b") as handle:
                handle.truncate(size_bytes)

    def read_file(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def file_size(self, name: str) -> int:
        return self.path(name).stat().st_size

    def delete(self, name: str) -> None:
        self.path(name).unlink()

    def read_range(self, name: str, offset: int, size_bytes: int) -> bytes:
        if offset < 0 or size_bytes < 0 or offset + size_bytes > self.file_size(name):
            raise HardwareFault("flash: read outside the file")
        with self.path(name).open("rb") as handle:
            handle.seek(offset)
            return handle.read(size_bytes)

    def write_range(self, name: str, offset: int, data: bytes) -> None:
        if offset < 0:
            raise HardwareFault("flash: negative offset")
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("r+b" if target.exists() else "wb") as handle:
            handle.seek(offset)
            handle.write(data)


class FlashController:
    """Programmed by the normal world's storage driver; DMAs as stream ``FLASH``."""

    def __init__(self, storage: FlashStorage, dma: DmaMaster) -> None:
        self.storage = storage
        self.dma = dma

    def read_to_memory(self, name: str, file_offset: int, iova: int,
                       size_bytes: int) -> WorkRecord:
        """DMA ``size_bytes`` of file ``name`` into memory at ``iova``."""
        if self.dma.timing_only:
            if file_offset < 0 or file_offset + size_bytes > self.storage.file_size(name):
                raise HardwareFault("flash: read outside the file")
            record = self.dma.write_metadata(iova, size_bytes)
        else:
            self.dma.check(iova, size_bytes, Access.WRITE)
            record = self.dma.write(iova, self.storage.read_range(name, file_offset, size_bytes))
        return record + WorkRecord(bytes_read_flash=size_bytes)

    def write_from_memory(self, name: str, file_offset: int, iova: int,
                          size_bytes: int) -> WorkRecord:
        """DMA ``size_bytes`` from memory at ``iova`` into file ``name``."""
        if self.dma.timing_only:
            record = self.dma.read_metadata(iova, size_bytes)
            self.storage.extend(name, file_offset + size_bytes)
        else:
            data = self.dma.read(iova, size_bytes)
            record = WorkRecord(bytes_dma=size_bytes)
            self.storage.write_range(name, file_offset, data)
        return record + WorkRecord(bytes_written_flash=size_bytes)
