"""Weight matrices as the model multiplies them, in one of two weight formats.

``float32`` (exact): every matrix is the fully dequantized float32 tensor and compute is
float32; this is the path compared with transformers. ``int4`` (fast, the default): matrices
in a GGML block format with a 4-bit plane form are kept as packed int4 planes
(:class:`~flexserve.engine.int4_matrix.Int4Matrix`, exact weights, bfloat16 scales) and other
matrices as bfloat16; matmul inputs are rounded to bfloat16, while norms, RoPE, attention and
the residual stream stay float32.
"""

from __future__ import annotations

import enum
from typing import Protocol

import torch
import torch.nn.functional as F

from flexserve.engine.int4_matrix import Int4Matrix, dense_dtype, packable
from flexserve.engine.nibble_planes import NibblePlanes, cat_rows
from flexserve.errors import ConfigError

WeightPart = torch.Tensor | NibblePlanes


class WeightFormat(enum.Enum):
    FLOAT32 = "float32"
    INT4 = "int4"

    @classmethod
    def parse(cls, value: str | WeightFormat) -> WeightFormat:
        if isinstance(value, WeightFormat):
            return value
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(f.value for f in cls)
            raise ConfigError(f"weight format must be one of {names}, got {value!r}") from None


DEFAULT_WEIGHT_FORMAT = WeightFormat.INT4


class Matrix(Protocol):
    out_features: int
    in_features: int

    def __call__(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        """``x @ W.T`` for ``x`` of shape ``(n, in_features)``.

        ``out_dtype=torch.float32`` asks for the float32 sums before any rounding to the
        matrix's own output dtype (bfloat16 for int4), where the path computes them (the
        logits of the output head); None keeps the matrix's own output dtype."""

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of ``W`` in float32."""


class DenseMatrix:
    """A plain tensor; the input is cast to its dtype (float32 or bfloat16).

    With ``bf16_values`` the weights are bfloat16 values held in float32 (for CPUs that
    multiply bfloat16 slowly): inputs are rounded to bfloat16 and outputs returned in
    bfloat16, so products equal a bfloat16 matrix's.
    """

    def __init__(self, weight: torch.Tensor, bf16_values: bool = False) -> None:
        self.weight = weight
        self.bf16_values = bf16_values
        self.out_features, self.in_features = weight.shape

    def __call__(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        if self.bf16_values:
            sums = F.linear(x.to(torch.bfloat16).float(), self.weight)
            return sums.to(out_dtype or torch.bfloat16)
        out = F.linear(x.to(self.weight.dtype), self.weight)
        return out if out_dtype is None else out.to(out_dtype)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[ids].float()


class StackedMatrix:
    """Matrices on top of each other (when their parts cannot be fused into one)."""

    def __init__(self, parts: list[Matrix]) -> None:
        self.parts = parts
        self.out_features = sum(p.out_features for p in parts)
        self.in_features = parts[0].in_features

    def __call__(self, x: torch.Tensor, out_dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.cat([part(x, out_dtype) for part in self.parts], dim=-1)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        raise ConfigError("a stacked matrix has no row lookup")


def _single(part: WeightPart, weight_format: WeightFormat) -> Matrix:
    if isinstance(part, NibblePlanes):
        if weight_format is WeightFormat.INT4 and packable(part):
            return Int4Matrix(part)
        part = part.dequantize()
    if weight_format is WeightFormat.FLOAT32:
        return DenseMatrix(part.float().contiguous())
    rounded = part.to(torch.bfloat16).contiguous()
    if dense_dtype() is torch.bfloat16:
        return DenseMatrix(rounded)
    return DenseMatrix(rounded.float(), bf16_values=True)


def make_matrix(parts: list[WeightPart], weight_format: WeightFormat) -> Matrix:
    """One matrix from row blocks ``parts`` (fused when they share a representation)."""
    if all(isinstance(p, torch.Tensor) for p in parts):
        return _single(torch.cat(parts) if len(parts) > 1 else parts[0], weight_format)
    planes = [p for p in parts if isinstance(p, NibblePlanes)]
    if len(planes) == len(parts) and len({p.n_planes for p in planes}) == 1:
        return _single(cat_rows(planes) if len(planes) > 1 else planes[0], weight_format)
    return StackedMatrix([_single(p, weight_format) for p in parts])
