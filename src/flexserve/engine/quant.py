"""Dequantize GGML tensor bytes to float32.

Plain float and integer types are converted here; the block formats (Q4_0 ... Q6_K, IQ*) are
unpacked with ``gguf.quants``, the reference codec maintained with the GGUF format itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from gguf import GGMLQuantizationType
from gguf import quants as gguf_quants

from flexserve.engine.ggml_types import GGML_TYPES, ggml_type, tensor_n_bytes, type_name
from flexserve.errors import ModelFormatError, UnsupportedQuantizationError

RawBytes = bytes | bytearray | memoryview | np.ndarray

# Types stored as plain little-endian numbers: id -> numpy dtype.
_PLAIN_DTYPES: dict[int, str] = {
    0: "<f4", 1: "<f2", 24: "<i1", 25: "<i2", 26: "<i4", 27: "<i8", 28: "<f8",
}
_BF16 = 30


def _gguf_block_types() -> frozenset[int]:
    supported = set()
    for type_id in GGML_TYPES:
        if type_id in _PLAIN_DTYPES or type_id == _BF16:
            continue
        try:
            qtype = GGMLQuantizationType(type_id)
        except ValueError:
            continue
        if qtype in gguf_quants._type_traits:
            supported.add(type_id)
    return frozenset(supported)


BLOCK_TYPES = _gguf_block_types()
SUPPORTED_TYPES = frozenset(_PLAIN_DTYPES) | {_BF16} | BLOCK_TYPES


def _as_uint8(raw: RawBytes) -> np.ndarray:
    if isinstance(raw, np.ndarray):
        return raw.reshape(-1).view(np.uint8)
    return np.frombuffer(raw, dtype=np.uint8)


def _bf16_to_f32(data: np.ndarray) -> np.ndarray:
    return (data.view("<u2").astype(np.uint32) << 16).view(np.float32)


def dequantize(raw: RawBytes, ggml_type_id: int, shape: Sequence[int]) -> np.ndarray:
    """Decode the stored bytes of one tensor into a new float32 array of ``shape``.

    ``shape`` is in numpy order (rows last-dimension innermost). The bytes must be exactly the
    tensor's size. The result never aliases ``raw``.
    """
    shape = tuple(int(d) for d in shape)
    if ggml_type_id not in SUPPORTED_TYPES:
        raise UnsupportedQuantizationError(
            f"cannot dequantize GGML type {type_name(ggml_type_id)} (id {ggml_type_id})"
        )
    data = _as_uint8(raw)
    expected_bytes = tensor_n_bytes(ggml_type_id, shape)
    if data.size != expected_bytes:
        raise ModelFormatError(
            f"{type_name(ggml_type_id)} tensor of shape {shape} needs {expected_bytes} bytes, "
            f"got {data.size}"
        )
    return _decode(data, ggml_type_id, shape)


def _decode(data: np.ndarray, ggml_type_id: int, shape: tuple[int, ...]) -> np.ndarray:
    if ggml_type_id in _PLAIN_DTYPES:
        values = data.view(_PLAIN_DTYPES[ggml_type_id])
        return values.astype(np.float32, copy=True).reshape(shape)
    if ggml_type_id == _BF16:
        return _bf16_to_f32(data).reshape(shape)
    info = ggml_type(ggml_type_id)
    row_bytes = shape[-1] // info.block_elems * info.block_bytes
    rows = data.reshape(-1, row_bytes)
    values = gguf_quants.dequantize(rows, GGMLQuantizationType(ggml_type_id))
    return np.ascontiguousarray(values, dtype=np.float32).reshape(shape)
