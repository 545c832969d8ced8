"""GGML tensor storage types: ids, names and block geometry.

A GGML tensor row is stored as a sequence of blocks; each block packs ``block_elems`` values
into ``block_bytes`` bytes. These numbers are format facts (ggml's type traits) and are all
the GGUF parser needs to know a tensor's byte size; dequantization lives in :mod:`quant`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.errors import ModelFormatError, UnsupportedQuantizationError


@dataclass(frozen=True)
class GGMLType:
    """One storage type: its id in GGUF files, its name and its block geometry."""

    type_id: int
    name: str
    block_elems: int
    block_bytes: int


_TYPES: tuple[GGMLType, ...] = (
    GGMLType(0, "F32", 1, 4),
    GGMLType(1, "F16", 1, 2),
    GGMLType(2, "Q4_0", 32, 18),
    GGMLType(3, "Q4_1", 32, 20),
    GGMLType(6, "Q5_0", 32, 22),
    GGMLType(7, "Q5_1", 32, 24),
    GGMLType(8, "Q8_0", 32, 34),
    GGMLType(10, "Q2_K", 256, 84),
    GGMLType(11, "Q3_K", 256, 110),
    GGMLType(12, "Q4_K", 256, 144),
    GGMLType(13, "Q5_K", 256, 176),
    GGMLType(14, "Q6_K", 256, 210),
    GGMLType(15, "Q8_K", 256, 292),
    GGMLType(16, "IQ2_XXS", 256, 66),
    GGMLType(17, "IQ2_XS", 256, 74),
    GGMLType(18, "IQ3_XXS", 256, 98),
    GGMLType(19, "IQ1_S", 256, 50),
    GGMLType(20, "IQ4_NL", 32, 18),
    GGMLType(21, "IQ3_S", 256, 110),
    GGMLType(22, "IQ2_S", 256, 82),
    GGMLType(23, "IQ4_XS", 256, 136),
    GGMLType(24, "I8", 1, 1),
    GGMLType(25, "I16", 1, 2),
    GGMLType(26, "I32", 1, 4),
    GGMLType(27, "I64", 1, 8),
    GGMLType(28, "F64", 1, 8),
    GGMLType(29, "IQ1_M", 256, 56),
    GGMLType(30, "BF16", 1, 2),
    GGMLType(34, "TQ1_0", 256, 54),
    GGMLType(35, "TQ2_0", 256, 66),
    GGMLType(39, "MXFP4", 32, 17),
)

GGML_TYPES: dict[int, GGMLType] = {t.type_id: t for t in _TYPES}

F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 0, 1, 2, 3, 6, 7, 8
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16 = 10, 11, 12, 13, 14, 30


def ggml_type(type_id: int) -> GGMLType:
    """The storage type with this id; :class:`UnsupportedQuantizationError` if unknown."""
    found = GGML_TYPES.get(type_id)
    if found is None:
        raise UnsupportedQuantizationError(f"unknown GGML tensor type id {type_id}")
    return found


def type_name(type_id: int) -> str:
    """A readable name for a type id, also for unknown ids."""
    found = GGML_TYPES.get(type_id)
    return found.name if found else f"type#{type_id}"


def tensor_n_bytes(type_id: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of ``shape`` (numpy order, last dim is the row) occupies in ``type_id``.

    The row length must be a whole number of blocks, as ggml requires.
    """
    info = ggml_type(type_id)
    row_elems = shape[-1] if shape else 1
    if row_elems % info.block_elems:
        raise ModelFormatError(
            f"{info.name} needs rows that are a multiple of {info.block_elems} values, "
            f"got a row of {row_elems}"
        )
    n_elems = 1
    for dim in shape:
        n_elems *= dim
    return n_elems // info.block_elems * info.block_bytes
