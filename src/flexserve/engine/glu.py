"""The gated activation between a block's gate/up and down projections (torch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def glu(gate_up: torch.Tensor, gelu: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """``act(gate) * up`` for ``gate_up = [gate | up]`` along the last dim: SiLU, or the
    tanh-approximated GELU with ``gelu``; into ``out`` when given. In the dtype of ``gate_up``
    (bfloat16 in the int4 format: each op rounds, as ``fs_glu`` of ``decode_ops.c`` does)."""
    gate, up = gate_up.chunk(2, dim=-1)
    activated = F.gelu(gate, approximate="tanh") if gelu else F.silu(gate)
    return torch.mul(activated, up, out=out) if out is not None else activated * up
