"""A weight matrix held as packed int4 planes, multiplied by torch's CPU int4 kernel.

Each plane of a :class:`~flexserve.engine.nibble_planes.NibblePlanes` matrix is packed into the
layout of ``torch.ops.aten._weight_int4pack_mm_for_cpu``: rows in blocks of 64, byte ``j`` of
column ``k`` holding row ``j`` (low nibble) and row ``j + 32`` (high nibble) of the block. The
kernel computes ``(digit - 8) * scale + zero`` per 32-column group with bfloat16 activations,
scales and zeros. Where the native kernels run (:mod:`native_gemm`), every product uses them on
these planes. Otherwise few-token inputs use torch's kernel and longer ones (prefill)
dequantize the matrix to bfloat16 once per call for a dense bfloat16 matmul, which is faster
there; the transposed scales that path needs are built on its first use only.
"""

from __future__ import annotations

from functools import cached_property

import torch

from flexserve.engine.native_gemm import native_q4_ops, q4_matmul
from flexserve.engine.nibble_planes import GROUP_COLS, NibblePlanes
from flexserve.errors import ModelFormatError

ROW_BLOCK = 64
KERNEL_MAX_TOKENS = 48  # torch path: above this many rows, dequantize-then-matmul is faster
_KERNEL_ZERO_DIGIT = 8


def packable(planes: NibblePlanes) -> bool:
    """True when the kernel's layout can hold the matrix (rows a multiple of 64)."""
    n_rows, n_cols = planes.shape
    return n_rows % ROW_BLOCK == 0 and n_cols % GROUP_COLS == 0


def pack_digits(digits: torch.Tensor) -> torch.Tensor:
    """uint8 digits ``(N, K)`` (0..15) in the kernel's packed ``(N, K/2)`` layout."""
    n_rows, n_cols = digits.shape
    blocks = digits.reshape(n_rows // ROW_BLOCK, 2, ROW_BLOCK // 2, n_cols)
    packed = blocks[:, 0] | (blocks[:, 1] << 4)
    return packed.transpose(1, 2).contiguous().reshape(n_rows, n_cols // 2)


class _Scratch:
    """One reusable bfloat16 buffer per size, so prefill does not fault in fresh pages."""

    def __init__(self) -> None:
        self._buffers: dict[int, torch.Tensor] = {}

    def take(self, n_elements: int) -> torch.Tensor:
        buffer = self._buffers.get(n_elements)
        if buffer is None:
            buffer = self._buffers[n_elements] = torch.empty(n_elements, dtype=torch.bfloat16)
        return buffer


_SCRATCH = _Scratch()
DEQUANTIZE_MAX_ELEMENTS = 8 * 1024 * 1024  # larger ones (vocabulary heads) always use the kernel


class Int4Matrix:
    """``(out_features, in_features)`` weights; ``self(x)`` is ``x @ W.T`` in bfloat16."""

    def __init__(self, planes: NibblePlanes) -> None:
        if not packable(planes):
            raise ModelFormatError(f"a {planes.shape} matrix cannot be int4-packed")
        self.out_features, self.in_features = planes.shape
        self.packed = [pack_digits(d) for d in planes.digits]
        self.scales_zeros = [self._scales_zeros(planes, p) for p in range(planes.n_planes)]

    @staticmethod
    def _scales_zeros(planes: NibblePlanes, plane: int) -> torch.Tensor:
        scales = planes.scales[plane]
        zeros = _KERNEL_ZERO_DIGIT * scales + (planes.offsets if plane == 0 else 0)
        return torch.stack((scales.t(), zeros.t()), dim=-1).to(torch.bfloat16).contiguous()

    @cached_property
    def scales_t(self) -> list[torch.Tensor]:
        """Per plane, bfloat16 scales ``(K/32, 1, N)`` for :meth:`dequantized_t`."""
        return [sz[..., 0][:, None, :].contiguous() for sz in self.scales_zeros]

    @cached_property
    def offsets_t(self) -> torch.Tensor:
        """bfloat16 group offsets ``(K/32, 1, N)``: the zeros less ``8 * scale`` per plane."""
        offsets = sum(sz[..., 1].float() - _KERNEL_ZERO_DIGIT * sz[..., 0].float()
                      for sz in self.scales_zeros)
        assert isinstance(offsets, torch.Tensor)
        return offsets.to(torch.bfloat16)[:, None, :].contiguous()

    @property
    def n_bytes(self) -> int:
        tensors = [*self.packed, *self.scales_zeros]
        return sum(t.numel() * t.element_size() for t in tensors)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.bfloat16).contiguous()
        ops = native_q4_ops()
        if ops is not None:
            return q4_matmul(ops, self.packed, self.scales_zeros, x, self.out_features)
        n_elements = self.out_features * self.in_features
        if x.shape[0] > KERNEL_MAX_TOKENS and n_elements <= DEQUANTIZE_MAX_ELEMENTS:
            return torch.mm(x, self.dequantized_t(_SCRATCH.take(n_elements)))
        out = _int4_mm(x, self.packed[0], self.scales_zeros[0])
        for packed, scales_zeros in zip(self.packed[1:], self.scales_zeros[1:], strict=True):
            out += _int4_mm(x, packed, scales_zeros)
        return out

    def dequantized_t(self, out: torch.Tensor | None = None) -> torch.Tensor:
        """``W.T`` as a bfloat16 ``(in_features, out_features)`` tensor (in ``out`` if given)."""
        n_rows, n_cols = self.out_features, self.in_features
        weight_t = torch.empty(n_rows * n_cols, dtype=torch.bfloat16) if out is None else out
        grouped = weight_t.view(n_cols // GROUP_COLS, GROUP_COLS, n_rows)
        plane = torch.empty_like(weight_t) if len(self.packed) > 1 else weight_t
        for index, (packed, scales) in enumerate(zip(self.packed, self.scales_t, strict=True)):
            target = weight_t if index == 0 else plane
            _unpack_t(packed, target.view(n_cols, n_rows // ROW_BLOCK, 2, ROW_BLOCK // 2))
            digits = target.view_as(grouped)
            if index == 0:
                torch.addcmul(self.offsets_t, digits, scales, out=digits)
            else:
                grouped.addcmul_(digits, scales)
        return weight_t.view(n_cols, n_rows)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of ``W`` in float32 (an embedding lookup), as the kernels weigh them."""
        n_cols = self.in_features
        block, within = ids // ROW_BLOCK, ids % ROW_BLOCK
        shift = (within // (ROW_BLOCK // 2) * 4).to(torch.uint8)[:, None]
        columns = torch.arange(n_cols)[None, :]
        values = torch.zeros(ids.numel(), n_cols)
        for packed, scales_zeros in zip(self.packed, self.scales_zeros, strict=True):
            blocks = packed.view(-1, n_cols, ROW_BLOCK // 2)
            digits = (blocks[block[:, None], columns, within[:, None] % (ROW_BLOCK // 2)]
                      >> shift) & 0x0F
            scales, zeros = (scales_zeros[:, ids, i].t().float().repeat_interleave(GROUP_COLS, 1)
                             for i in (0, 1))
            values += (digits.float() - _KERNEL_ZERO_DIGIT) * scales + zeros
        return values


def _unpack_t(packed: torch.Tensor, target: torch.Tensor) -> None:
    """Write the digits of ``packed`` into ``target`` viewed ``(K, N/64, 2, 32)`` (``W.T``)."""
    n_cols = target.shape[0]
    blocks = packed.view(-1, n_cols, ROW_BLOCK // 2)
    target[:, :, 0].copy_((blocks & 0x0F).transpose(0, 1))
    target[:, :, 1].copy_((blocks >> 4).transpose(0, 1))


def _int4_mm(x: torch.Tensor, packed: torch.Tensor, scales_zeros: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, GROUP_COLS, scales_zeros)
