"""The packed int4 layouts: FlexServe's native one and the one torch's CPU kernel expects here.

A packed matrix ``(N, K)`` of 4-bit digits is ``(N, K/2)`` bytes laid out in row blocks of
``B`` rows: byte ``j`` of column ``k`` of a block holds the digit of row ``j`` (low nibble) and
of row ``j + B/2`` (high nibble). The native kernels (``q4_kernels.c``) read ``B = 64``.
``torch.ops.aten._weight_int4pack_mm_for_cpu`` reads the layout its converter writes, and that
depends on the instruction set torch dispatches to at run time: ``B = 64`` with AVX-512,
``B = 32`` with AVX2 only (measured on an AMD EPYC without AVX-512 with torch 2.13). Feeding
the kernel a layout it does not expect gives wrong numbers without an error, so the layout is
found by packing a probe with torch's own converter, once per process.
"""

from __future__ import annotations

from functools import cache

import torch

NATIVE_ROW_BLOCK = 64
_CANDIDATE_ROW_BLOCKS = (64, 32, 16, 128)
_PROBE_ROWS, _PROBE_COLS = 128, 64
PACK_CHUNK_ROWS = 4096  # rows packed at a time: temporaries stay small for vocabulary heads


def pack_digits(digits: torch.Tensor, row_block: int = NATIVE_ROW_BLOCK) -> torch.Tensor:
    """uint8 digits ``(N, K)`` (0..15) as ``(N, K/2)`` bytes in row blocks of ``row_block``."""
    n_rows, n_cols = digits.shape
    out = torch.empty(n_rows, n_cols // 2, dtype=torch.uint8)
    for start in range(0, n_rows, PACK_CHUNK_ROWS):
        chunk = digits[start : start + PACK_CHUNK_ROWS]
        blocks = chunk.reshape(chunk.shape[0] // row_block, 2, row_block // 2, n_cols)
        packed = blocks[:, 0] | (blocks[:, 1] << 4)
        out[start : start + chunk.shape[0]].view(-1, n_cols, row_block // 2).copy_(
            packed.transpose(1, 2))
    return out


def unpack_digits_t(packed: torch.Tensor, row_block: int, target: torch.Tensor) -> None:
    """Write the digits of ``packed`` transposed into ``target`` viewed ``(K, N/B, 2, B/2)``."""
    n_cols = target.shape[0]
    blocks = packed.view(-1, n_cols, row_block // 2)
    target[:, :, 0].copy_((blocks & 0x0F).transpose(0, 1))
    target[:, :, 1].copy_((blocks >> 4).transpose(0, 1))


def digits_at(packed: torch.Tensor, row_block: int, ids: torch.Tensor) -> torch.Tensor:
    """uint8 digits ``(len(ids), K)`` of rows ``ids``."""
    half = row_block // 2
    n_cols = packed.shape[1] * 2
    block, within = ids // row_block, ids % row_block
    shift = (within // half * 4).to(torch.uint8)[:, None]
    columns = torch.arange(n_cols)[None, :]
    blocks = packed.view(-1, n_cols, half)
    return (blocks[block[:, None], columns, within[:, None] % half] >> shift) & 0x0F


@cache
def torch_row_block() -> int | None:
    """The row block of torch's int4 kernel on this CPU, or None when it is none of ours."""
    generator = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 16, (_PROBE_ROWS, _PROBE_COLS), generator=generator,
                           dtype=torch.int32)
    try:
        converted = torch.ops.aten._convert_weight_to_int4pack_for_cpu(digits, 1)
    except (RuntimeError, AttributeError):
        return None
    for row_block in _CANDIDATE_ROW_BLOCKS:
        if torch.equal(pack_digits(digits.to(torch.uint8), row_block), converted):
            return row_block
    return None
