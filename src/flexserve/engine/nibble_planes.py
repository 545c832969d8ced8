"""GGML block formats rewritten exactly as 4-bit planes with per-32-column scales.

Every supported format stores, per group of 32 weights of a row, small unsigned integers with a
group scale and offset. Splitting those integers into 4-bit digits gives *planes*: weight
``w = sum_p scale[p] * digit[p] + offset`` exactly (the scales and offsets are float32 products
of the stored float16 numbers). Q4_0/Q4_1/Q4_K need one plane; Q5_0/Q5_1/Q8_0 two (the fifth
bit, or the high nibble). These planes are what :mod:`int4_matrix` packs for torch's int4
matmul kernel. Formats not listed here (Q6_K, K-quants other than Q4_K, IQ*) have no planes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from gguf import quants as gguf_quants

from flexserve.engine.ggml_types import ggml_type
from flexserve.errors import ModelFormatError

GROUP_COLS = 32
Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K = 2, 3, 6, 7, 8, 12


@dataclass
class NibblePlanes:
    """A ``(n_rows, n_cols)`` matrix as ``sum_p scales[p] * digits[p] + offsets`` per group.

    ``digits`` is uint8 ``(P, n_rows, n_cols)`` with values 0..15; ``scales`` float32
    ``(P, n_rows, n_cols / 32)``; ``offsets`` float32 ``(n_rows, n_cols / 32)``.
    """

    digits: torch.Tensor
    scales: torch.Tensor
    offsets: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.digits.shape[1]), int(self.digits.shape[2])

    @property
    def n_planes(self) -> int:
        return int(self.digits.shape[0])

    def select_rows(self, order: torch.Tensor) -> NibblePlanes:
        """The matrix with rows in ``order`` (a permutation or selection of row indices)."""
        return NibblePlanes(self.digits[:, order], self.scales[:, order], self.offsets[order])

    def dequantize(self) -> torch.Tensor:
        """The float32 matrix (equal to the format's reference decoder)."""
        n_rows, n_cols = self.shape
        groups = self.digits.reshape(self.n_planes, n_rows, -1, GROUP_COLS).float()
        values = (groups * self.scales[..., None]).sum(0) + self.offsets[..., None]
        return values.reshape(n_rows, n_cols)


def cat_rows(parts: list[NibblePlanes]) -> NibblePlanes:
    """Stack matrices with the same number of planes and columns on top of each other."""
    return NibblePlanes(torch.cat([p.digits for p in parts], 1),
                        torch.cat([p.scales for p in parts], 1),
                        torch.cat([p.offsets for p in parts], 0))


def _f16(column: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(column).view(np.float16).astype(np.float32)[:, 0]


def _low_high(qs: np.ndarray) -> np.ndarray:
    """GGML's nibble order: byte ``j`` holds element ``j`` (low) and ``j + half`` (high)."""
    n_blocks, half = qs.shape
    pair = np.stack((qs & 0x0F, qs >> 4), axis=1)
    return pair.reshape(n_blocks, 2 * half)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    bits = np.ascontiguousarray(qh).view("<u4")[:, 0:1] >> np.arange(32, dtype=np.uint32)
    return (bits & 1).astype(np.uint8)


# Each decoder maps (n_blocks, block_bytes) uint8 to digits (P, n_blocks, 32) and
# scales (P, n_blocks), offsets (n_blocks,); Q4_K's 256-wide blocks come out as 8 groups.
Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]


def _q4_0(b: np.ndarray) -> Decoded:
    d = _f16(b[:, 0:2])
    return _low_high(b[:, 2:18])[None], d[None], -8 * d


def _q4_1(b: np.ndarray) -> Decoded:
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    return _low_high(b[:, 4:20])[None], d[None], m


def _q5(d: np.ndarray, qh: np.ndarray, qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    digits = np.stack((_low_high(qs), _fifth_bits(qh)))
    return digits, np.stack((d, 16 * d))


def _q5_0(b: np.ndarray) -> Decoded:
    d = _f16(b[:, 0:2])
    digits, scales = _q5(d, b[:, 2:6], b[:, 6:22])
    return digits, scales, -16 * d


def _q5_1(b: np.ndarray) -> Decoded:
    d, m = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    digits, scales = _q5(d, b[:, 4:8], b[:, 8:24])
    return digits, scales, m


def _q8_0(b: np.ndarray) -> Decoded:
    d = _f16(b[:, 0:2])
    q = b[:, 2:34]  # int8 q as uint8 q + 128 = q ^ 0x80: its low nibble is q's, its high
    digits = np.empty((2, *q.shape), dtype=np.uint8)  # nibble q's with the top bit flipped
    np.bitwise_and(q, 0x0F, out=digits[0])
    np.right_shift(q, 4, out=digits[1])
    np.bitwise_xor(digits[1], np.uint8(0x08), out=digits[1])  # no full-size temporary
    return digits, np.stack((d, 16 * d)), -128 * d


def _q4_k(b: np.ndarray) -> Decoded:
    n_blocks = b.shape[0]
    d, dmin = _f16(b[:, 0:2]), _f16(b[:, 2:4])
    sc, mins = gguf_quants.Q4_K.get_scale_min(b[:, 4:16])
    qs = b[:, 16:144].reshape(n_blocks, 4, 32)  # 4 chunks of 64 elements: low then high
    digits = np.stack((qs & 0x0F, qs >> 4), axis=2).reshape(n_blocks * 8, 32)
    scales = (d[:, None] * sc.astype(np.float32)).reshape(-1)
    offsets = -(dmin[:, None] * mins.astype(np.float32)).reshape(-1)
    return digits[None], scales[None], offsets


_DECODERS: dict[int, Callable[[np.ndarray], Decoded]] = {
    Q4_0: _q4_0, Q4_1: _q4_1, Q5_0: _q5_0, Q5_1: _q5_1, Q8_0: _q8_0, Q4_K: _q4_k,
}
PLANE_TYPES = frozenset(_DECODERS)


def to_planes(raw: np.ndarray, ggml_type_id: int, shape: tuple[int, int]) -> NibblePlanes:
    """The planes of one 2-D tensor stored as ``ggml_type_id`` (numpy shape order)."""
    if ggml_type_id not in _DECODERS:
        raise ModelFormatError(f"GGML type id {ggml_type_id} has no 4-bit plane form")
    n_rows, n_cols = shape
    info = ggml_type(ggml_type_id)
    blocks = raw.reshape(-1, info.block_bytes)
    if blocks.shape[0] * info.block_elems != n_rows * n_cols:
        raise ModelFormatError(f"tensor of shape {shape} does not match its block bytes")
    digits, scales, offsets = _DECODERS[ggml_type_id](blocks)
    n_planes, n_groups = digits.shape[0], n_cols // GROUP_COLS
    return NibblePlanes(
        torch.from_numpy(np.ascontiguousarray(digits).reshape(n_planes, n_rows, n_cols)),
        torch.from_numpy(np.ascontiguousarray(scales, np.float32).reshape(n_planes, n_rows,
                                                                          n_groups)),
        torch.from_numpy(np.ascontiguousarray(offsets, np.float32).reshape(n_rows, n_groups)),
    )
