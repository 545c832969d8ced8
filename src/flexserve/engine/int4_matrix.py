"""A weight matrix held as packed int4 planes, multiplied natively or by torch's int4 kernel.

Each plane of a :class:`~flexserve.engine.nibble_planes.NibblePlanes` matrix is packed in row
blocks (:mod:`int4_layout`) with bfloat16 ``(scale, zero)`` pairs per 32-column group:
``w = (digit - 8) * scale + zero``. Where the native kernels run (:mod:`native_gemm`), every
product uses them on the native layout. Otherwise the planes are packed in the layout torch's
``_weight_int4pack_mm_for_cpu`` expects on this CPU; few-token inputs use that kernel and longer
ones (prefill) dequantize the matrix once per call for a dense matmul, in bfloat16 where the
CPU multiplies bfloat16 in hardware and in float32 elsewhere (:mod:`cpu_features`); the
transposed scales that path needs are built on its first use only.
"""

from __future__ import annotations

import ctypes
from functools import cached_property

import torch

from flexserve.engine.cpu_features import has_fast_bf16
from flexserve.engine.int4_layout import (
    NATIVE_ROW_BLOCK,
    digits_at,
    pack_digits,
    torch_row_block,
    unpack_digits_t,
)
from flexserve.engine.native.build import load_decode_ops
from flexserve.engine.native_gemm import combinable, native_q4_ops, q4_matmul
from flexserve.engine.nibble_planes import GROUP_COLS, NibblePlanes
from flexserve.errors import ModelFormatError

KERNEL_MAX_TOKENS = 48  # torch path: above this many rows, dequantize-then-matmul is faster
_KERNEL_ZERO_DIGIT = 8


def packable(planes: NibblePlanes) -> bool:
    """True when every layout can hold the matrix (rows a multiple of 64)."""
    n_rows, n_cols = planes.shape
    return n_rows % NATIVE_ROW_BLOCK == 0 and n_cols % GROUP_COLS == 0


def choose_row_block() -> int:
    """The native layout where the native kernels run, else torch's layout on this CPU."""
    if native_q4_ops() is not None:
        return NATIVE_ROW_BLOCK
    return torch_row_block() or NATIVE_ROW_BLOCK


def dense_dtype() -> torch.dtype:
    """The dtype dense products of bfloat16 values run in on this CPU."""
    return torch.bfloat16 if has_fast_bf16() else torch.float32


class _Scratch:
    """One reusable buffer per size and dtype, so prefill does not fault in fresh pages."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    def take(self, n_elements: int, dtype: torch.dtype) -> torch.Tensor:
        buffer = self._buffers.get((n_elements, dtype))
        if buffer is None:
            buffer = torch.empty(n_elements, dtype=dtype)
            self._buffers[(n_elements, dtype)] = buffer
        return buffer


_SCRATCH = _Scratch()
DEQUANTIZE_MAX_ELEMENTS = 8 * 1024 * 1024  # larger ones (vocabulary heads) always use the kernel


class Int4Matrix:
    """``(out_features, in_features)`` weights; ``self(x)`` is ``x @ W.T`` in bfloat16."""

    def __init__(self, planes: NibblePlanes, row_block: int | None = None) -> None:
        if not packable(planes):
            raise ModelFormatError(f"a {planes.shape} matrix cannot be int4-packed")
        self.out_features, self.in_features = planes.shape
        self.row_block = choose_row_block() if row_block is None else row_block
        self.packed = [pack_digits(d, self.row_block) for d in planes.digits]
        self.scales_zeros = [self._scales_zeros(planes, p) for p in range(planes.n_planes)]
        self.one_pass = combinable(self.packed, self.scales_zeros)

    @staticmethod
    def _scales_zeros(planes: NibblePlanes, plane: int) -> torch.Tensor:
        scales = planes.scales[plane]
        zeros = _KERNEL_ZERO_DIGIT * scales + (planes.offsets if plane == 0 else 0)
        return torch.stack((scales.t(), zeros.t()), dim=-1).to(torch.bfloat16).contiguous()

    @cached_property
    def scales_t(self) -> list[torch.Tensor]:
        """Per plane, scales ``(K/32, 1, N)`` for :meth:`dequantized_t` (its dtype)."""
        return [sz[..., 0][:, None, :].to(dense_dtype()).contiguous()
                for sz in self.scales_zeros]

    @cached_property
    def offsets_t(self) -> torch.Tensor:
        """Group offsets ``(K/32, 1, N)``: the zeros less ``8 * scale`` per plane, rounded to
        bfloat16 (held in the dtype of :meth:`dequantized_t`)."""
        offsets = sum(sz[..., 1].float() - _KERNEL_ZERO_DIGIT * sz[..., 0].float()
                      for sz in self.scales_zeros)
        assert isinstance(offsets, torch.Tensor)
        rounded = offsets.to(torch.bfloat16).to(dense_dtype())
        return rounded[:, None, :].contiguous()

    @property
    def torch_kernel_fits(self) -> bool:
        """True when torch's int4 kernel reads this matrix's layout on this CPU."""
        return self.row_block == torch_row_block()

    @property
    def n_bytes(self) -> int:
        tensors = [*self.packed, *self.scales_zeros]
        return sum(t.numel() * t.element_size() for t in tensors)

    def __call__(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """``x @ W.T`` from bfloat16-rounded ``x``: bfloat16, or the float32 sums when
        ``out_dtype`` is float32 (native kernels and float32 dequantization; torch's int4
        kernel only has bfloat16 outputs)."""
        x = x.to(torch.bfloat16).contiguous()
        out_dtype = out_dtype or torch.bfloat16
        ops = native_q4_ops()
        if ops is not None and self.row_block == NATIVE_ROW_BLOCK:
            return q4_matmul(ops, self.packed, self.scales_zeros, x, self.out_features,
                             out_dtype, self.one_pass)
        n_elements = self.out_features * self.in_features
        few_tokens = x.shape[0] <= KERNEL_MAX_TOKENS or n_elements > DEQUANTIZE_MAX_ELEMENTS
        if not (few_tokens and self.torch_kernel_fits):
            weight_t = self.dequantized_t(_SCRATCH.take(n_elements, dense_dtype()))
            return torch.mm(x.to(weight_t.dtype), weight_t).to(out_dtype)
        out = _int4_mm(x, self.packed[0], self.scales_zeros[0])
        for packed, scales_zeros in zip(self.packed[1:], self.scales_zeros[1:], strict=True):
            out += _int4_mm(x, packed, scales_zeros)
        return out.to(out_dtype)

    def dequantized_t(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """``W.T`` as an ``(in_features, out_features)`` tensor in ``out`` (flat, of
        :func:`dense_dtype` elements) or a new one: each weight rounded to bfloat16 in
        bfloat16, exact (from the bfloat16 scales and offsets) in float32."""
        n_rows, n_cols = self.out_features, self.in_features
        weight_t = torch.empty(n_rows * n_cols, dtype=dense_dtype()) if out is None else out
        grouped = weight_t.view(n_cols // GROUP_COLS, GROUP_COLS, n_rows)
        plane = torch.empty_like(weight_t) if len(self.packed) > 1 else weight_t
        block = self.row_block
        for index, (packed, scales) in enumerate(zip(self.packed, self.scales_t, strict=True)):
            target = weight_t if index == 0 else plane
            unpack_digits_t(packed, block, target.view(n_cols, n_rows // block, 2, block // 2))
            digits = target.view_as(grouped)
            if index == 0:
                torch.addcmul(self.offsets_t, digits, scales, out=digits)
            else:
                grouped.addcmul_(digits, scales)
        return weight_t.view(n_cols, n_rows)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of ``W`` in float32 (an embedding lookup), as the kernels weigh them:
        by the C helper where it is built (about 2 us per row), else by torch."""
        ops = load_decode_ops()
        if ops is None:
            return self.torch_rows(ids)
        ids = ids.to(torch.int64).contiguous()
        out = torch.empty(ids.numel(), self.in_features)
        ops.fs_int4_rows(self._plane_pointers[0], self._plane_pointers[1], len(self.packed),
                         self.row_block, self.out_features, self.in_features, ids.data_ptr(),
                         ids.numel(), out.data_ptr())
        return out

    @cached_property
    def _plane_pointers(self) -> tuple[ctypes.Array, ctypes.Array]:
        """C arrays of the planes' and their scale pairs' addresses (for ``fs_int4_rows``)."""
        n_planes = len(self.packed)
        packed = (ctypes.c_void_p * n_planes)(*(p.data_ptr() for p in self.packed))
        pairs = (ctypes.c_void_p * n_planes)(*(sz.data_ptr() for sz in self.scales_zeros))
        return packed, pairs

    def torch_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """:meth:`rows` in torch (the reference, and the path without the C helpers)."""
        n_rows, n_groups = ids.numel(), self.in_features // GROUP_COLS
        values = torch.zeros(n_rows, n_groups, GROUP_COLS)
        for packed, scales_zeros in zip(self.packed, self.scales_zeros, strict=True):
            digits = digits_at(packed, self.row_block, ids).view(n_rows, n_groups, GROUP_COLS)
            scales, zeros = (scales_zeros[:, ids, i].t().float()[..., None] for i in (0, 1))
            values += (digits.float() - _KERNEL_ZERO_DIGIT) * scales + zeros
        return values.view(n_rows, self.in_features)


def _int4_mm(x: torch.Tensor, packed: torch.Tensor, scales_zeros: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, GROUP_COLS, scales_zeros)
