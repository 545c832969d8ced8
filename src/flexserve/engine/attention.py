"""Softmax attention of a block's query heads over the cached keys and values (torch).

Grouped-query attention (query heads ``h*g .. h*g+g-1`` share KV head ``h``) for the torch
forward pass and for long prefills of the fused path: a decode query as a small batched
matmul, several queries through torch's fused attention. Masks come from positions: causal,
and a sliding window where the layer has one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_mask(
    q_positions: torch.Tensor, n_keys: int, window_tokens: int
) -> torch.Tensor | None:
    """Boolean ``(n_q, n_keys)`` mask, True where a query may see a key; None if all may."""
    k_positions = torch.arange(n_keys)
    distance = q_positions[:, None] - k_positions[None, :]
    allowed = distance >= 0
    if window_tokens > 0:
        allowed &= distance < window_tokens
    return None if bool(allowed.all()) else allowed


def sees_all_keys(start: int, n_tokens: int, window_tokens: int) -> bool:
    """True when queries ``start..start+n-1`` may see every key ``0..start+n-1``."""
    return n_tokens == 1 and (window_tokens == 0 or start < window_tokens)


_NO_BIAS = torch.zeros(())


def grouped_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
    scale: float, causal: bool = False,
) -> torch.Tensor:
    """Softmax attention of ``(n_heads, n, d)`` queries over ``(n_kv_heads, T, d)`` keys/values.

    Query heads ``h*g .. h*g+g-1`` share KV head ``h`` (grouped-query attention). ``mask`` is
    None when every query sees every key, or when ``causal`` (query ``i`` sees keys ``0..i``).
    """
    n_heads, n_q, head_dim = q.shape
    n_kv = keys.shape[0]
    group = n_heads // n_kv
    if n_q == 1 and mask is None:  # decode: a KV head's queries act as its query positions
        scores = torch.baddbmm(_NO_BIAS, q.reshape(n_kv, group, head_dim), keys.transpose(1, 2),
                               beta=0.0, alpha=scale)
        return torch.bmm(torch.softmax(scores, dim=-1), values).reshape(n_heads, 1, head_dim)
    return _sdpa(q, keys, values, mask, scale, causal and mask is None)


def _sdpa(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
          scale: float, causal: bool) -> torch.Tensor:
    """torch's fused attention on ``(heads, n, d)``, given 4-D so its flash kernel applies; it
    maps query heads to shared KV heads itself (``enable_gqa``: equal results to repeating the
    KV heads, 5-50% faster here without the copies)."""
    out = F.scaled_dot_product_attention(q[None], keys[None], values[None], attn_mask=mask,
                                         is_causal=causal, scale=scale,
                                         enable_gqa=keys.shape[0] != q.shape[0])
    return out[0]
