"""Rotary position embeddings in the half-split ("NeoX") layout.

Dimension ``i`` of the first half of the rotated dims pairs with dimension ``i + rd/2``; pair
``i`` turns by ``position / scale * base^(-2i/rd)``. Llama GGUF files store Q/K rows permuted
for the interleaved layout; the model un-permutes them on install, so one layout serves all.
"""

from __future__ import annotations

import torch


class RopeTable:
    """cos/sin of every position for one (base, scale, dims), grown on demand."""

    def __init__(self, base: float, rope_dims: int, position_scale: float = 1.0) -> None:
        self.base = base
        self.rope_dims = rope_dims
        self.position_scale = position_scale
        self.cos = torch.empty(0, rope_dims // 2)
        self.sin = torch.empty(0, rope_dims // 2)

    def _grow(self, n_positions: int) -> None:
        half = self.rope_dims // 2
        exponents = torch.arange(half, dtype=torch.float64) * 2 / self.rope_dims
        inv_freq = self.base ** -exponents
        positions = torch.arange(n_positions, dtype=torch.float64) / self.position_scale
        angles = torch.outer(positions, inv_freq)
        self.cos = angles.cos().float()
        self.sin = angles.sin().float()

    def lookup(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of shape ``(n, rope_dims/2)`` for integer ``positions``."""
        needed = int(positions.max()) + 1
        if needed > self.cos.shape[0]:
            self._grow(max(needed, 2 * self.cos.shape[0], 256))
        return self.cos[positions], self.sin[positions]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape ``(heads, n, head_dim)``; dims past the rotated ones pass through."""
    half = cos.shape[-1]
    x1, x2, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    rotated = (x1 * cos - x2 * sin, x2 * cos + x1 * sin)
    if rest.shape[-1]:
        return torch.cat((*rotated, rest), dim=-1)
    return torch.cat(rotated, dim=-1)


def unpermute_interleaved_rows(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo the llama GGUF Q/K row permutation (interleaved pairs -> half-split per head).

    GGUF row ``2*j + s`` of a head holds original row ``s*head_dim/2 + j``.
    """
    n_rows, n_in = weight.shape
    head_dim = n_rows // n_heads
    per_head = weight.reshape(n_heads, head_dim // 2, 2, n_in)
    return per_head.transpose(1, 2).reshape(n_rows, n_in).contiguous()


def interleaved_row_order(n_rows: int, n_heads: int) -> torch.Tensor:
    """Row indices that perform :func:`unpermute_interleaved_rows` as ``weight[order]``."""
    head_dim = n_rows // n_heads
    rows = torch.arange(n_rows).reshape(n_heads, head_dim // 2, 2)
    return rows.transpose(1, 2).reshape(n_rows)


def rotation_matrices(cos: torch.Tensor, sin: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Per position, the ``(head_dim, head_dim)`` matrix ``R`` with ``apply_rope(x) == x @ R``.

    ``cos``/``sin`` are ``(n, rope_dims/2)``; dims past the rotated ones map to themselves.
    One matmul per layer then rotates all Q and K heads of a position.
    """
    n_positions, half = cos.shape
    matrices = torch.eye(head_dim).repeat(n_positions, 1, 1)
    low, high = torch.arange(half), torch.arange(half, 2 * half)
    matrices[:, low, low] = cos
    matrices[:, high, high] = cos
    matrices[:, high, low] = -sin
    matrices[:, low, high] = sin
    return matrices
