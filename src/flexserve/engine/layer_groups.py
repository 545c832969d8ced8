"""Tensors grouped per layer: the unit the secure pipeline loads, decrypts and installs.

A model is split into ``embed`` (token embedding and any other global tensor), ``blk.0`` ...
``blk.N-1`` and ``output`` (final norm and, unless tied to the embedding, the output matrix).
Each group has a blob layout: its tensors' stored bytes back to back, each 32-byte aligned.
This module only lays groups out (it needs no torch: the sealer and the catalog use it);
:mod:`layers` builds weights from a group blob.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flexserve.engine.gguf_file import GGUFFile, TensorInfo
from flexserve.errors import ModelFormatError

GROUP_ALIGNMENT_BYTES = 32
EMBED_GROUP = "embed"
OUTPUT_GROUP = "output"
_OUTPUT_TENSORS = ("output_norm.weight", "output.weight")
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class LayerGroup:
    """One layer's tensors and where each sits inside the group blob."""

    name: str
    index: int
    tensors: tuple[TensorInfo, ...]
    rel_offsets: tuple[int, ...]
    n_bytes: int

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    def tensor_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)


def _group_name(tensor_name: str) -> str:
    match = _BLOCK_RE.match(tensor_name)
    if match:
        return f"blk.{int(match.group(1))}"
    return OUTPUT_GROUP if tensor_name in _OUTPUT_TENSORS else EMBED_GROUP


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def make_group(name: str, index: int, tensors: list[TensorInfo]) -> LayerGroup:
    """Lay out ``tensors`` in a blob, in the given order, each start 32-byte aligned."""
    offsets, cursor = [], 0
    for info in tensors:
        cursor = _round_up(cursor, GROUP_ALIGNMENT_BYTES)
        offsets.append(cursor)
        cursor += info.n_bytes
    return LayerGroup(name, index, tuple(tensors), tuple(offsets), cursor)


def _block_numbers(names: dict[str, list[TensorInfo]]) -> list[int]:
    numbers = sorted(int(n.split(".")[1]) for n in names if n.startswith("blk."))
    if numbers != list(range(len(numbers))):
        raise ModelFormatError(f"GGUF blocks are not numbered 0..N-1: {numbers[:8]}...")
    return numbers


def layer_groups(gguf: GGUFFile) -> list[LayerGroup]:
    """The file's tensors as groups: embed first, blocks in order, output last."""
    by_group: dict[str, list[TensorInfo]] = {}
    for info in gguf.tensors.values():
        by_group.setdefault(_group_name(info.name), []).append(info)
    if EMBED_GROUP not in by_group:
        raise ModelFormatError("GGUF file has no token embedding (token_embd.weight)")
    order = [EMBED_GROUP] + [f"blk.{i}" for i in _block_numbers(by_group)]
    if OUTPUT_GROUP in by_group:
        order.append(OUTPUT_GROUP)
    return [make_group(name, i, by_group[name]) for i, name in enumerate(order)]


def group_bytes(gguf: GGUFFile, group: LayerGroup) -> bytes:
    """The group blob read from the file: each tensor's stored bytes at its relative offset."""
    blob = bytearray(group.n_bytes)
    for info, rel in zip(group.tensors, group.rel_offsets, strict=True):
        blob[rel : rel + info.n_bytes] = gguf.tensor_bytes(info.name)
    return bytes(blob)
