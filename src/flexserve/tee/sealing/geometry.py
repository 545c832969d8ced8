"""Where every chunk sits, and what binds it: file offsets, nonces and associated data.

Geometry is derived only from an authenticated manifest (unsealing) or from the sealer's own
plan (sealing); both sides call the same functions, so they cannot disagree. Nothing here is
ever taken from the ciphertext the normal world hands in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from flexserve.tee.sealing.format import HEADER_BYTES, TAG_BYTES, Manifest

CHUNK_AAD_DOMAIN = b"FXCHUNK1"
LAST_IN_UNIT = 0x01
LAST_IN_FILE = 0x02
_COUNTER = struct.Struct("<Q")
_AAD_FIXED = struct.Struct("<8s32s32sQIIQQIBH")


@dataclass(frozen=True)
class ChunkRef:
    """One AES-GCM chunk: plaintext ``unit_offset_bytes`` .. + ``plaintext_bytes`` of a unit."""

    unit_index: int
    index_in_unit: int
    global_index: int
    unit_offset_bytes: int
    plaintext_bytes: int
    file_offset_bytes: int
    flags: int

    @property
    def ciphertext_bytes(self) -> int:
        """Stored size: ciphertext followed by its 16-byte tag."""
        return self.plaintext_bytes + TAG_BYTES

    @property
    def is_last_in_unit(self) -> bool:
        return bool(self.flags & LAST_IN_UNIT)

    @property
    def is_last_in_file(self) -> bool:
        return bool(self.flags & LAST_IN_FILE)


@dataclass(frozen=True)
class SealedUnit:
    """One unit (``meta``, ``embed``, ``blk.N``, ``output``) and its chunks, in order."""

    index: int
    name: str
    n_bytes: int
    chunks: tuple[ChunkRef, ...]

    @property
    def file_offset_bytes(self) -> int:
        return self.chunks[0].file_offset_bytes

    @property
    def ciphertext_bytes(self) -> int:
        return sum(c.ciphertext_bytes for c in self.chunks)


def _unit_chunks(unit_index: int, n_bytes: int, chunk_bytes: int, first_global: int,
                 file_offset: int) -> list[ChunkRef]:
    chunks = []
    for i, start in enumerate(range(0, n_bytes, chunk_bytes)):
        size = min(chunk_bytes, n_bytes - start)
        flags = LAST_IN_UNIT if start + size == n_bytes else 0
        chunks.append(ChunkRef(unit_index, i, first_global + i, start, size, file_offset, flags))
        file_offset += size + TAG_BYTES
    return chunks


def plan_units(manifest: Manifest, manifest_bytes: int) -> tuple[SealedUnit, ...]:
    """Every unit and chunk of the blob, with the last chunk of the file flagged."""
    units: list[SealedUnit] = []
    global_index, offset = 0, HEADER_BYTES + manifest_bytes
    for index, entry in enumerate(manifest.units):
        chunks = _unit_chunks(index, entry.n_bytes, manifest.chunk_bytes, global_index, offset)
        global_index += len(chunks)
        offset = chunks[-1].file_offset_bytes + chunks[-1].ciphertext_bytes
        units.append(SealedUnit(index, entry.name, entry.n_bytes, tuple(chunks)))
    last = units[-1].chunks[-1]
    closing = replace(last, flags=last.flags | LAST_IN_FILE)
    units[-1] = SealedUnit(units[-1].index, units[-1].name, units[-1].n_bytes,
                           (*units[-1].chunks[:-1], closing))
    return tuple(units)


def blob_bytes(units: tuple[SealedUnit, ...]) -> int:
    """Exact size of a well-formed blob: it ends right after the last chunk."""
    last = units[-1].chunks[-1]
    return last.file_offset_bytes + last.ciphertext_bytes


MANIFEST_NONCE_INDEX = (1 << 64) - 1  # never a chunk index


def manifest_nonce(nonce_prefix: bytes) -> bytes:
    """The manifest's nonce: the per-file prefix and a counter value no chunk uses."""
    return nonce_prefix + _COUNTER.pack(MANIFEST_NONCE_INDEX)


def chunk_nonce(nonce_prefix: bytes, chunk: ChunkRef) -> bytes:
    """96-bit GCM nonce: 4-byte per-file prefix || u64 global chunk index."""
    return nonce_prefix + _COUNTER.pack(chunk.global_index)


@dataclass(frozen=True)
class Binding:
    """What every chunk of one blob is bound to besides its own position."""

    header_sha256: bytes
    model_id: bytes
    model_version: int


def chunk_aad(binding: Binding, unit: SealedUnit, chunk: ChunkRef) -> bytes:
    """Associated data of one chunk: file identity, unit identity and exact position."""
    name = unit.name.encode("ascii")
    fixed = _AAD_FIXED.pack(
        CHUNK_AAD_DOMAIN, binding.header_sha256, binding.model_id, binding.model_version,
        unit.index, chunk.index_in_unit, chunk.global_index, chunk.unit_offset_bytes,
        chunk.plaintext_bytes, chunk.flags, len(name),
    )
    return fixed + name
