"""Weights built from a layer group's blob (see :mod:`layer_groups` for the grouping).

:func:`load_group` builds the weights from a caller's blob only, never from the file.
"""

from __future__ import annotations

import numpy as np
import torch

from flexserve.engine.gguf_file import TensorInfo
from flexserve.engine.layer_groups import (
    EMBED_GROUP,
    GROUP_ALIGNMENT_BYTES,
    OUTPUT_GROUP,
    LayerGroup,
    group_bytes,
    layer_groups,
    make_group,
)
from flexserve.engine.matrix import WeightFormat, WeightPart
from flexserve.engine.nibble_planes import PLANE_TYPES, to_planes
from flexserve.engine.quant import RawBytes, dequantize
from flexserve.errors import ModelFormatError

__all__ = ["EMBED_GROUP", "GROUP_ALIGNMENT_BYTES", "OUTPUT_GROUP", "GroupWeights", "LayerGroup",
           "group_bytes", "layer_groups", "load_group", "make_group"]

GroupWeights = dict[str, WeightPart]


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
