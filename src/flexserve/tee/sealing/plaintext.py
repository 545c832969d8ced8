"""The plaintext units of a GGUF file, produced one chunk at a time (sealing side).

Units in load order: ``meta`` (the GGUF header, metadata and tensor index: file bytes
``0 .. data_offset``), then one unit per layer group (``embed``, ``blk.0`` .., ``output``)
whose bytes are exactly :func:`flexserve.engine.layers.group_bytes`. Chunks are built from
the memory-mapped file piece by piece, so at most one chunk of plaintext is held at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layer_groups import LayerGroup, layer_groups
from flexserve.tee.sealing.format import META_UNIT, UnitEntry


@dataclass(frozen=True)
class PlainUnit:
    """A unit to seal: either the file prefix (``group is None``) or a layer group."""

    name: str
    n_bytes: int
    group: LayerGroup | None = None

    def entry(self) -> UnitEntry:
        return UnitEntry(self.name, self.n_bytes)


def plain_units(gguf: GGUFFile) -> list[PlainUnit]:
    meta = PlainUnit(META_UNIT, gguf.data_offset_bytes)
    return [meta] + [PlainUnit(g.name, g.n_bytes, g) for g in layer_groups(gguf)]


def file_sha256(path: Path) -> bytes:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()  # a small reused buffer


def _prefix_chunks(path: Path, n_bytes: int, chunk_bytes: int) -> Iterator[bytes]:
    with Path(path).open("rb") as handle:
        for start in range(0, n_bytes, chunk_bytes):
            want = min(chunk_bytes, n_bytes - start)
            piece = handle.read(want)
            if len(piece) != want:
                raise OSError(f"{path} changed while it was being sealed")
            yield piece


def _group_chunks(gguf: GGUFFile, group: LayerGroup, chunk_bytes: int) -> Iterator[bytearray]:
    spans = list(zip(group.tensors, group.rel_offsets, strict=True))
    for start in range(0, group.n_bytes, chunk_bytes):
        end = min(start + chunk_bytes, group.n_bytes)
        buf = bytearray(end - start)  # alignment gaps stay zero, as in group_bytes
        for info, rel in spans:
            lo, hi = max(start, rel), min(end, rel + info.n_bytes)
            if lo < hi:
                buf[lo - start : hi - start] = gguf.tensor_bytes(info.name)[lo - rel : hi - rel]
        yield buf


def unit_chunks(gguf: GGUFFile, path: Path, unit: PlainUnit,
                chunk_bytes: int) -> Iterator[bytes | bytearray]:
    """The plaintext of ``unit`` in order, ``chunk_bytes`` at a time (the last may be short)."""
    if unit.group is None:
        return _prefix_chunks(path, unit.n_bytes, chunk_bytes)
    return _group_chunks(gguf, unit.group, chunk_bytes)
