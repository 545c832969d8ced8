"""Tensors grouped per layer: the unit the secure pipeline loads, decrypts and installs.

A model is split into ``embed`` (token embedding and any other global tensor), ``blk.0`` ...
``blk.N-1`` and ``output`` (final norm and, unless tied to the embedding, the output matrix).
Each group has a blob layout: its tensors' stored bytes back to back, each 32-byte aligned.
:func:`load_group` builds the weights from a caller's blob only, never from the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from flexserve.engine.gguf_file import GGUFFile, TensorInfo
from flexserve.engine.matrix import WeightFormat, WeightPart
from flexserve.engine.nibble_planes import PLANE_TYPES, to_planes
from flexserve.engine.quant import RawBytes, dequantize
from flexserve.errors import ModelFormatError

GROUP_ALIGNMENT_BYTES = 32
EMBED_GROUP = "embed"
OUTPUT_GROUP = "output"
_OUTPUT_TENSORS = ("output_norm.weight", "output.weight")
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")
GroupWeights = dict[str, WeightPart]


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


def _as_byte_view(buf: RawBytes) -> memoryview:
    if isinstance(buf, np.ndarray):
        return memoryview(np.ascontiguousarray(buf).reshape(-1).view(np.uint8))
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def load_group(
    group: LayerGroup, buf: RawBytes, weight_format: WeightFormat | str = WeightFormat.FLOAT32
) -> GroupWeights:
    """Decode every tensor of ``group`` from ``buf`` (the group blob).

    With the ``float32`` format every tensor is dequantized to float32. With ``int4``, matrices
    stored in a block format that has an exact 4-bit plane form come back as
    :class:`~flexserve.engine.nibble_planes.NibblePlanes`, everything else as float32. Only
    ``buf`` is read; the results own their memory (they do not alias ``buf``).
    """
    weight_format = WeightFormat.parse(weight_format)
    view = _as_byte_view(buf)
    if len(view) < group.n_bytes:
        raise ModelFormatError(
            f"group {group.name} needs {group.n_bytes} bytes, the buffer holds {len(view)}"
        )
    weights: GroupWeights = {}
    for info, rel in zip(group.tensors, group.rel_offsets, strict=True):
        weights[info.name] = _decode(info, view[rel : rel + info.n_bytes], weight_format)
    return weights


def _decode(info: TensorInfo, raw: memoryview, weight_format: WeightFormat) -> WeightPart:
    shape = tuple(int(d) for d in info.shape)
    if weight_format is WeightFormat.INT4 and info.ggml_type in PLANE_TYPES and len(shape) == 2:
        return to_planes(np.frombuffer(raw, dtype=np.uint8), info.ggml_type, (shape[0], shape[1]))
    return torch.from_numpy(dequantize(raw, info.ggml_type, info.shape))
