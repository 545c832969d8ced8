"""Int4 matrix products of several input rows by ``fs_q4_gemm`` of ``q4_kernels.c``.

The native kernel (``fs_q4_gemv`` for a single row) multiplies torch's packed int4 planes
by bfloat16 rows with float32
accumulation, converting each weight register once for a tile of tokens; it replaces both
torch's int4 kernel (slow beyond a few rows) and dequantize-then-matmul (a full bfloat16 copy
of the matrix per call) for prefill. A second plane adds onto the first plane's float32 sums,
and the result is rounded to bfloat16 once, as the single-vector kernel does. Where the AVX2
kernels run, two planes whose scales differ by exactly 16 are multiplied in one pass
(``fs_q4x2_gemm``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import torch

from flexserve.engine.native.build import load_decode_ops

GROUP_COLS = 32


def native_q4_ops() -> ctypes.CDLL | None:
    """The native kernels, when they are built and this CPU runs them; else None."""
    ops = load_decode_ops()
    return ops if ops is not None and ops.fs_gemv_available() else None


def combinable(packed: list[torch.Tensor], scales_zeros: list[torch.Tensor]) -> bool:
    """True for two planes whose second scales are exactly 16 times the first's and whose
    second zeros carry no offset (``zero = 8 * scale``): Q5_*, Q8_0 planes, which
    ``fs_q4x2_gemm`` multiplies in one pass as digits ``low + 16 * high`` (an O(N K / 32) check:
    make it once per matrix)."""
    if len(packed) != 2:
        return False
    low, high = (sz[..., 0].float() for sz in scales_zeros)
    high_zero = scales_zeros[1][..., 1].float()
    return bool(torch.equal(high, 16 * low) and torch.equal(high_zero, 8 * high))


PlanePointers = Sequence[tuple[int, int]]  # (packed, scales_zeros) addresses per plane


def q4_products(ops: ctypes.CDLL, planes: PlanePointers, one_pass: bool, x_ptr: int,
                n_tokens: int, n_rows: int, n_cols: int, out: torch.Tensor,
                partial_ptr: int | None, sums_ptr: int) -> None:
    """``out = x @ W.T`` for the bfloat16 rows at ``x_ptr`` into ``out`` (float32 sums or
    bfloat16), on preallocated buffers: ``partial_ptr`` (float32 ``n_tokens * n_rows``, for a
    second plane unless ``one_pass``) and ``sums_ptr`` (``n_tokens * n_cols / 32`` floats)."""
    final = (out.data_ptr(), None) if out.dtype is torch.float32 else (None, out.data_ptr())
    if one_pass and ops.fs_q4x2_available():
        (low, low_sz), (high, high_sz) = planes
        ops.fs_q4x2_gemm(low, low_sz, high, high_sz, x_ptr, n_tokens, n_rows, n_cols, *final,
                         sums_ptr)
        return
    last = len(planes) - 1
    for index, (packed, scales_zeros) in enumerate(planes):
        acc_in = partial_ptr if index > 0 else None
        out_f32, out_bf16 = final if index == last else (partial_ptr, None)
        if n_tokens == 1:
            ops.fs_q4_gemv(packed, scales_zeros, x_ptr, n_rows, n_cols, acc_in, out_f32,
                           out_bf16, sums_ptr)
        else:
            ops.fs_q4_gemm(packed, scales_zeros, x_ptr, n_tokens, n_rows, n_cols, acc_in,
                           out_f32, out_bf16, sums_ptr)


def q4_matmul(ops: ctypes.CDLL, packed: list[torch.Tensor], scales_zeros: list[torch.Tensor],
              x: torch.Tensor, n_rows: int, out_dtype: torch.dtype = torch.bfloat16,
              one_pass: bool = False) -> torch.Tensor:
    """``x @ W.T`` ``(n, n_rows)`` for a contiguous bfloat16 ``x`` ``(n, K)``: rounded to
    bfloat16, or the float32 sums for ``out_dtype=torch.float32``. ``one_pass`` (for planes
    that are :func:`combinable`) multiplies two planes together where the kernels can."""
    n_tokens, n_cols = x.shape
    dtype = torch.float32 if out_dtype is torch.float32 else torch.bfloat16
    out = torch.empty(n_tokens, n_rows, dtype=dtype)
    sums = torch.empty(n_tokens * (n_cols // GROUP_COLS))
    planes = [(p.data_ptr(), sz.data_ptr()) for p, sz in zip(packed, scales_zeros, strict=True)]
    partial = torch.empty(n_tokens, n_rows) if len(planes) > 1 else None
    q4_products(ops, planes, one_pass, x.data_ptr(), n_tokens, n_rows, n_cols, out,
                None if partial is None else partial.data_ptr(), sums.data_ptr())
    return out
