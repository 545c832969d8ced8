"""Readers of sealed blobs, all on the normal-world side of the trust boundary.

A reader is the normal world's file service: it may lie about sizes, return short, long or
changed bytes, or fail. :func:`read_exact` is the secure side's only way in: it asks for an
exact range and returns a private copy, or raises :class:`SecurityError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from flexserve.errors import HardwareFault, ModelNotFoundError, SecurityError
from flexserve.soc.flash import FlashStorage
from flexserve.tee.sealing.buffers import byte_length, copy_in

ByteSource = bytes | bytearray | memoryview


class BlobReader(Protocol):
    """Random access to one sealed blob."""

    def size_bytes(self) -> int: ...

    def read(self, offset_bytes: int, n_bytes: int) -> ByteSource: ...


class FileBlobReader:
    """A sealed blob in a host file (the store), read with ``pread``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"sealed model not found: {self.path}")
        self._fd = os.open(self.path, os.O_RDONLY)

    def size_bytes(self) -> int:
        return os.fstat(self._fd).st_size

    def read(self, offset_bytes: int, n_bytes: int) -> bytes:
        return os.pread(self._fd, n_bytes, offset_bytes)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileBlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BytesBlobReader:
    """A sealed blob the caller already holds (tests, blobs received over a channel)."""

    def __init__(self, data: ByteSource) -> None:
        self._data = memoryview(data)

    def size_bytes(self) -> int:
        return len(self._data)

    def read(self, offset_bytes: int, n_bytes: int) -> memoryview:
        return self._data[offset_bytes : offset_bytes + n_bytes]


class FlashBlobReader:
    """A sealed blob on the emulated device's flash, read through the normal world."""

    def __init__(self, storage: FlashStorage, name: str) -> None:
        self.storage = storage
        self.name = name
        if not storage.exists(name):
            raise ModelNotFoundError(f"sealed model not found on flash: {name}")

    def size_bytes(self) -> int:
        return self.storage.file_size(self.name)

    def read(self, offset_bytes: int, n_bytes: int) -> bytes:
        return self.storage.read_range(self.name, offset_bytes, n_bytes)


def read_exact(reader: BlobReader, offset_bytes: int, n_bytes: int) -> bytes:
    """Exactly ``n_bytes`` at ``offset_bytes``, copied into secure memory, or SecurityError."""
    try:
        data = reader.read(offset_bytes, n_bytes)
    except (OSError, HardwareFault, ValueError, OverflowError):
        raise SecurityError() from None
    if byte_length(data) != n_bytes:
        raise SecurityError()
    return copy_in(data)


def reported_size(reader: BlobReader) -> int:
    """The size the normal world reports (untrusted; only ever compared)."""
    try:
        return int(reader.size_bytes())
    except (OSError, HardwareFault, ValueError):
        raise SecurityError() from None
