"""Matrix times one vector (or a few rows) into preallocated buffers, for the fused steps.

An :class:`~flexserve.engine.int4_matrix.Int4Matrix` is multiplied by the native int4 kernels
(:func:`~flexserve.engine.native_gemm.q4_products`) directly on its packed planes (float32
accumulation across planes, one final rounding); any other matrix (dense bfloat16, stacked)
goes through torch and is copied into the buffer. Either way no tensor is allocated per call.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

from flexserve.engine.int4_layout import NATIVE_ROW_BLOCK
from flexserve.engine.int4_matrix import Int4Matrix
from flexserve.engine.matrix import Matrix
from flexserve.engine.native_gemm import q4_products


@dataclass(frozen=True)
class NativeMatVec:
    """An int4 matrix's plane addresses; ``matrix`` is held so they stay valid."""

    matrix: Int4Matrix
    planes: tuple[tuple[int, int], ...]  # (packed, scales_zeros) addresses per plane
    one_pass: bool  # two planes multiplied together by fs_q4x2_gemm

    @classmethod
    def of(cls, matrix: Int4Matrix, ops: ctypes.CDLL) -> NativeMatVec:
        planes = tuple((p.data_ptr(), sz.data_ptr())
                       for p, sz in zip(matrix.packed, matrix.scales_zeros, strict=True))
        one_pass = matrix.one_pass and ops.fs_q4x2_available()
        return cls(matrix, planes, bool(one_pass))


MatVec = NativeMatVec | Matrix


def plan(matrix: Matrix, ops: ctypes.CDLL) -> MatVec:
    """The fastest available way to multiply ``matrix`` by one vector."""
    if (isinstance(matrix, Int4Matrix) and matrix.row_block == NATIVE_ROW_BLOCK
            and ops.fs_gemv_available()):
        return NativeMatVec.of(matrix, ops)
    return matrix


class MatVecRunner:
    """Runs :data:`MatVec` products with a shared float32 accumulator and group sums (sized
    for ``max_rows`` outputs of ``max_cols`` inputs per input row, grown for more rows)."""

    def __init__(self, ops: ctypes.CDLL, max_rows: int, max_cols: int) -> None:
        self.ops = ops
        self.max_rows, self.max_cols = max_rows, max_cols
        self.accumulator = torch.empty(max_rows)
        self.group_sums = torch.empty(max_cols // 32 + 1)

    def _fit(self, n_tokens: int) -> None:
        if self.accumulator.numel() < n_tokens * self.max_rows:
            self.accumulator = torch.empty(n_tokens * self.max_rows)
            self.group_sums = torch.empty(n_tokens * (self.max_cols // 32) + 1)

    def __call__(self, matvec: MatVec, x: torch.Tensor, out: torch.Tensor) -> None:
        """``out = x W^T`` for contiguous bfloat16 rows ``x`` ``(n, in)`` into a contiguous
        ``out`` ``(n, out)``, bfloat16 or float32."""
        if not isinstance(matvec, NativeMatVec):
            out.view(-1).copy_(matvec(x, out.dtype).view(-1))
            return
        matrix, n_tokens = matvec.matrix, x.shape[0]
        self._fit(n_tokens)
        partial = self.accumulator.data_ptr() if len(matvec.planes) > 1 else None
        q4_products(self.ops, matvec.planes, matvec.one_pass, x.data_ptr(), n_tokens,
                    matrix.out_features, matrix.in_features, out, partial,
                    self.group_sums.data_ptr())
