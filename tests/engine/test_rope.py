"""RoPE tables, rotation, and the llama Q/K row un-permutation."""

from __future__ import annotations

import math

import torch

from flexserve.engine.rope import RopeTable, apply_rope, unpermute_interleaved_rows


def test_angles_follow_the_base_and_scale() -> None:
    table = RopeTable(base=10_000.0, rope_dims=8)
    cos, sin = table.lookup(torch.tensor([3]))
    expected = [3 * 10_000.0 ** (-2 * i / 8) for i in range(4)]
    assert torch.allclose(cos[0], torch.tensor([math.cos(a) for a in expected]))
    assert torch.allclose(sin[0], torch.tensor([math.sin(a) for a in expected]))
    scaled = RopeTable(base=10_000.0, rope_dims=8, position_scale=2.0)
    assert torch.allclose(scaled.lookup(torch.tensor([6]))[0], cos)
    assert table.lookup(torch.tensor([5000]))[0].shape == (1, 4)  # grows on demand


def test_rotation_pairs_halves_and_keeps_norms() -> None:
    x = torch.randn(2, 3, 8)
    cos, sin = RopeTable(100.0, 8).lookup(torch.arange(3))
    y = apply_rope(x, cos, sin)
    assert torch.allclose(y[:, 0], x[:, 0])  # position 0: no rotation
    pair_norm = lambda t: t[..., :4] ** 2 + t[..., 4:] ** 2  # noqa: E731
    assert torch.allclose(pair_norm(y), pair_norm(x), atol=1e-5)
    partial = apply_rope(x, cos[:, :2], sin[:, :2])  # only 4 of 8 dims rotate
    assert torch.equal(partial[..., 4:], x[..., 4:])


def test_unpermute_inverts_the_interleaving() -> None:
    head_dim, n_heads = 8, 2
    original = torch.arange(n_heads * head_dim).float().unsqueeze(1)
    interleaved = original.reshape(n_heads, 2, head_dim // 2, 1).transpose(1, 2).reshape(-1, 1)
    assert interleaved[:4, 0].tolist() == [0, 4, 1, 5]
    assert torch.equal(unpermute_interleaved_rows(interleaved, n_heads), original)
