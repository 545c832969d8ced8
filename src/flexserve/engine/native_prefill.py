"""Prefill's element-wise work between matmuls in C, for the ``int4`` weight format.

At short prompts, prefill spends a quarter of its time in small torch operations (5-60 us each
with two threads: a 32-token SmolLM2 prefill ran about 25 ms of them beside 68 ms of int4
products). Two of them have one-call native forms in ``decode_ops.c``, threaded across rows:
the RMSNorm that feeds a matmul (computed in float32 and rounded to bfloat16, which the int4
matmul would do to its input anyway) and the gated activation (SiLU/GELU of the bfloat16 gate
rounded to bfloat16, times the bfloat16 up, rounded: torch's bfloat16 semantics). Both equal
:func:`~flexserve.engine.model.rms_norm` and the torch activation up to float32 summation order.
"""

from __future__ import annotations

import ctypes

import torch


class NativePrefill:
    """Row-wise C helpers on tensors; each returns None where its inputs do not fit."""

    def __init__(self, ops: ctypes.CDLL) -> None:
        self.ops = ops

    def norm_to_bf16(self, hidden: torch.Tensor, weight: torch.Tensor,
                     eps: float) -> torch.Tensor | None:
        """``bf16(rms_norm(hidden) * weight)`` for float32 ``hidden`` ``(n, d)``."""
        if not (_plain(hidden, torch.float32, 2) and _plain(weight, torch.float32, 1)):
            return None
        n_rows, width = hidden.shape
        out = torch.empty(n_rows, width, dtype=torch.bfloat16)
        self.ops.fs_norm_rows(hidden.data_ptr(), n_rows, width, weight.data_ptr(), eps,
                              out.data_ptr())
        return out

    def glu(self, gate_up: torch.Tensor, gelu: bool) -> torch.Tensor | None:
        """``bf16(act(gate) * up)`` for bfloat16 ``gate_up = [gate | up]`` ``(n, 2 ffn)``."""
        if not _plain(gate_up, torch.bfloat16, 2):
            return None
        n_rows, width = gate_up.shape
        out = torch.empty(n_rows, width // 2, dtype=torch.bfloat16)
        self.ops.fs_glu_rows(gate_up.data_ptr(), n_rows, width // 2, int(gelu), out.data_ptr())
        return out


def _plain(tensor: torch.Tensor, dtype: torch.dtype, n_dims: int) -> bool:
    return tensor.dtype is dtype and tensor.dim() == n_dims and tensor.is_contiguous()
