"""Ciphertext from flash, through the normal world's TEE file service.

The file service DMAs a range of a flash file into ordinary kernel pages; the secure side
copies those bytes into its own memory (``read_shared``) before anything looks at them and
hands the pages back. :class:`ServiceBlobReader` is a :class:`~flexserve.tee.sealing.BlobReader`
over that path, so ``SealedModel.open`` and chunk reads see only private copies.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from flexserve.errors import ConfigError, HardwareFault, SecurityError, SMCError
from flexserve.monitor.secure_port import SecureWorldPort
from flexserve.soc.constants import FRAME_SIZE_BYTES


class SharedPages(Protocol):
    ipa_pages: np.ndarray
    size_bytes: int

    def runs(self) -> list[tuple[int, int, int]]: ...


class FileRpc(Protocol):
    """What the framework asks of the normal world's file service (untrusted)."""

    def file_size(self, name: str) -> int: ...

    def read(self, name: str, offset: int, size_bytes: int) -> SharedPages: ...

    def release(self, buffer: SharedPages) -> None: ...


class ServiceBlobReader:
    """Reads a sealed blob on flash; returns private copies, never views of shared pages."""

    def __init__(self, files: FileRpc, port: SecureWorldPort, name: str) -> None:
        self.files, self.port, self.name = files, port, name
        self.requests = 0
        self.bytes_read = 0

    def size_bytes(self) -> int:
        try:
            return int(self.files.file_size(self.name))
        except (OSError, ConfigError, HardwareFault):
            raise SecurityError() from None

    def read(self, offset_bytes: int, n_bytes: int) -> bytes:
        try:
            buffer = self.files.read(self.name, offset_bytes, n_bytes)
        except (OSError, ConfigError, HardwareFault):
            raise SecurityError() from None
        try:
            data = self._copy_out(buffer, n_bytes)
        finally:
            self.files.release(buffer)
        self.requests += 1
        self.bytes_read += n_bytes
        return data

    def _copy_out(self, buffer: SharedPages, n_bytes: int) -> bytes:
        if buffer.size_bytes != n_bytes or buffer.ipa_pages.size * FRAME_SIZE_BYTES < n_bytes:
            raise SecurityError()
        out = bytearray()
        try:
            for _, ipa, size in buffer.runs():  # IPA == PA for normal RAM (docs/normal-world.md)
                out += self.port.read_shared(ipa, size)
        except SMCError:
            raise SecurityError() from None  # the OS pointed us at memory that is not shared
        if len(out) != n_bytes:
            raise SecurityError()
        return bytes(out)
