"""Historical KV caches in Flex-Mem: reused for a conversation's next turn, written back
encrypted when the normal world needs the memory.

After a request, the KV cache of its tokens (prompt and the generated tokens that went
through the model) is copied into Flex-Mem frames, one entry per model (the latest
conversation). The next request of that model reuses the longest common prefix of token ids,
checked token by token (an exact match: KV positions depend only on the tokens before them),
and computes only the rest of its prompt.

Under reclamation an entry is encrypted (AES-256-GCM with a key made at boot that never leaves
the TA, a fresh 96-bit nonce per write, the entry's identity as associated data), written to
flash through the normal world's file service, and its frames are scrubbed and given back.
Reusing it reads the ciphertext back, verifies and decrypts it into new frames; any failure
is the generic ``SecurityError`` (the entry is dropped; nothing unverified is used). A request
consumes the entry it reuses; its own KV cache replaces it when the request ends.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flexserve.errors import SecurityError
from flexserve.tee.framework.files import FileRpc, ServiceBlobReader, SharedPages
from flexserve.tee.framework.frames import FrameSink, read_back
from flexserve.tee.trusted_os import SecureAllocation, TaServices

#: Reuse a prefix only if it saves at least this many tokens of prefill.
MIN_REUSE_TOKENS = 8
NONCE_BYTES = 12
#: Written-back entries on flash: ``kv-<id>.fxkv`` (ciphertext under a key of this boot).
KV_FILE_PREFIX, KV_FILE_SUFFIX = "kv-", ".fxkv"


class FileWriter(FileRpc, Protocol):
    """What write-back needs of the normal world's file service (untrusted)."""

    def buffer(self, size_bytes: int) -> SharedPages: ...

    def write(self, name: str, buffer: SharedPages) -> None: ...

    def delete(self, name: str) -> None: ...


@dataclass
class KvEntry:
    entry_id: int
    key: str  # the conversation's owner: one model in one client session
    model: str
    token_ids: tuple[int, ...] = field(repr=False)
    n_bytes: int = 0
    allocation: SecureAllocation | None = field(default=None, repr=False)  # in Flex-Mem
    flash_name: str | None = None  # written back
    nonce: bytes | None = None

    @property
    def resident(self) -> bool:
        return self.allocation is not None

    @property
    def frames(self) -> int:
        return int(self.allocation.frames.size) if self.allocation is not None else 0

    def aad(self) -> bytes:
        return (f"flexserve-kv|{self.entry_id}|{self.key}|{self.model}|{len(self.token_ids)}|"
                f"{self.n_bytes}").encode()


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class KvStore:
    """One historical KV entry per conversation owner (model and client session); resident or
    written back."""

    def __init__(self, services: TaServices, files: FileWriter | None) -> None:
        self.services, self.files = services, files
        self.entries: dict[str, KvEntry] = {}
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._ids = itertools.count(1)
        self.bytes_written_back = 0
        self.bytes_restored = 0

    @property
    def resident_frames(self) -> int:
        return sum(e.frames for e in self.entries.values())

    def match(self, key: str, prompt_ids: Sequence[int]) -> tuple[KvEntry, int] | None:
        """The owner's entry and how many leading prompt tokens it covers, if worth it
        (at least ``MIN_REUSE_TOKENS`` and at least one prompt token left to compute)."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        n = min(common_prefix(entry.token_ids, prompt_ids), len(prompt_ids) - 1)
        return (entry, n) if n >= MIN_REUSE_TOKENS else None

    def take(self, entry: KvEntry) -> bytes:
        """The entry's bytes for a request, which consumes it: a written-back entry is read
        back and verified first; the frames and flash copy are released (the request's own
        KV cache replaces it at check-in), so the cache never holds it twice."""
        if not entry.resident:
            self._restore(entry)  # read back, verify, decrypt into new frames
        assert entry.allocation is not None
        data = read_back(self.services.port, self.services.owner, entry.allocation.frames,
                         entry.n_bytes).tobytes()
        self.drop(entry.key)
        return data

    def save(self, key: str, token_ids: Sequence[int], data: bytes,
             model: str | None = None) -> KvEntry:
        """Keep ``data`` (the KV of ``token_ids``) as ``key``'s entry, replacing the old."""
        self.drop(key)
        allocation = self.services.alloc_secure(len(data))
        FrameSink(self.services.port, self.services.owner, allocation.frames).write(0, data)
        entry = KvEntry(next(self._ids), key, model or key, tuple(token_ids), len(data),
                        allocation)
        self.entries[key] = entry
        return entry

    def drop(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is None:
            return
        if entry.allocation is not None:
            self.services.free_secure(entry.allocation)
        if entry.flash_name is not None and self.files is not None:
            self.files.delete(entry.flash_name)

    def write_back(self, entry: KvEntry) -> np.ndarray:
        """Encrypt to flash, scrub and surrender the frames; returns their IPA pages."""
        assert entry.allocation is not None and self.files is not None
        plain = read_back(self.services.port, self.services.owner, entry.allocation.frames,
                          entry.n_bytes).tobytes()
        entry.nonce = os.urandom(NONCE_BYTES)  # fresh per write: a key never sees a nonce twice
        sealed = self._aead.encrypt(entry.nonce, plain, entry.aad())
        name = f"{KV_FILE_PREFIX}{entry.entry_id}{KV_FILE_SUFFIX}"
        buffer = self.files.buffer(len(sealed))
        for offset, ipa, size in buffer.runs():  # IPA == PA for normal RAM
            self.services.port.write_shared(ipa, sealed[offset:offset + size])
        self.files.write(name, buffer)
        entry.flash_name = name
        pages = self.services.surrender_secure(entry.allocation)
        entry.allocation = None
        self.bytes_written_back += len(sealed)
        return pages

    def _restore(self, entry: KvEntry) -> None:
        assert entry.flash_name is not None and entry.nonce is not None
        files = self.files
        assert files is not None
        reader = ServiceBlobReader(files, self.services.port, entry.flash_name)
        try:
            sealed = reader.read(0, entry.n_bytes + 16)
            plain = self._aead.decrypt(entry.nonce, sealed, entry.aad())
        except (SecurityError, InvalidTag):
            self.entries.pop(entry.key, None)
            raise SecurityError() from None
        allocation = self.services.alloc_secure(len(plain))
        FrameSink(self.services.port, self.services.owner, allocation.frames).write(0, plain)
        files.delete(entry.flash_name)
        entry.allocation, entry.flash_name = allocation, None
        self.bytes_restored += len(sealed)

