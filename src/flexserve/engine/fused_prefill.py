"""A block of a prefill (several new tokens) with the non-matmul work fused into C calls.

Eager torch spends a short prefill's time outside the matmuls: about 40 small operations per
block (norms, casts, the RoPE rotation, KV writes, repeats, attention, SiLU), each costing
more in dispatch than in arithmetic at 32 rows. This block keeps the four weight matmuls on the
native int4 kernels (:class:`~flexserve.engine.native_matvec.MatVecRunner`, preallocated
outputs) and does the rest row-parallel in ``decode_ops.c``: residual add + RMSNorm (+ bfloat16
rounding), QK norm + RoPE + KV-cache write, and attention (in C per query and head up to
:data:`C_ATTENTION_MAX_KEYS` keys, in torch's fused kernel above, where its blocked
matmuls win); the gated activation stays torch's. It computes what
:meth:`~flexserve.engine.model.Transformer.forward_block` computes for the ``int4`` format
(the same roundings to bfloat16, float32 elsewhere) and is checked against it in the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from flexserve.engine.attention import attention_mask, grouped_attention
from flexserve.engine.glu import glu
from flexserve.engine.kv_cache import KVCache
from flexserve.engine.native_matvec import MatVecRunner
from flexserve.errors import ContextOverflowError

if TYPE_CHECKING:
    from flexserve.engine.fused_decode import FusedDecoder

# measured on SmolLM2, 2 threads, fresh prompts (attention ms per forward, C / torch): 128 tokens
# 15 / 23, 256: 49 / 58, 512: 173 / 197, 1024: 714 / 436
C_ATTENTION_MAX_KEYS = 768


class _RowBuffers:
    """Every intermediate of a block for up to ``capacity`` rows, grown on demand."""

    def __init__(self) -> None:
        self.capacity = 0
        self._flat: dict[str, torch.Tensor] = {}

    def fit(self, n_rows: int, widths: dict[str, tuple[int, torch.dtype]]) -> None:
        if n_rows <= self.capacity:
            return
        self._flat = {name: torch.empty(n_rows * width, dtype=dtype)
                      for name, (width, dtype) in widths.items()}
        self.capacity = n_rows

    def rows(self, name: str, n_rows: int) -> torch.Tensor:
        flat = self._flat[name]
        return flat[: n_rows * (flat.numel() // self.capacity)].view(n_rows, -1)


class FusedPrefill:
    """Runs :meth:`block` for one transformer, sharing the fused decoder's plans and tables."""

    def __init__(self, decoder: FusedDecoder) -> None:
        c = decoder.config
        self.decoder, self.ops, self.config = decoder, decoder.ops, c
        bf16, f32 = torch.bfloat16, torch.float32
        self.widths = {
            "x": (c.d_model, bf16), "qkv": (c.q_dim + 2 * c.kv_dim, bf16), "q": (c.q_dim, f32),
            "attn": (c.q_dim, bf16), "delta": (c.d_model, bf16),
            "gate_up": (2 * c.ffn_dim, bf16), "act": (c.ffn_dim, bf16), "scratch": (c.d_model, f32),
        }
        self.buffers = _RowBuffers()
        self.matmul = MatVecRunner(decoder.ops, max(2 * c.ffn_dim, c.q_dim + 2 * c.kv_dim,
                                                    c.d_model), max(c.d_model, c.q_dim, c.ffn_dim))

    def block(self, index: int, hidden: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """Block ``index`` on ``hidden`` ``(n, d_model)`` at positions ``start ..``; writes their
        keys/values into ``cache`` (the caller commits them); returns the new hidden states."""
        c, ops, n = self.config, self.ops, hidden.shape[0]
        if start + n > cache.capacity_tokens:
            raise ContextOverflowError(f"positions up to {start + n} exceed the cache")
        blk = self.decoder.block_pointers(index)
        self.buffers.fit(n, self.widths)
        row = self.buffers.rows
        x, qkv, q, attn = row("x", n), row("qkv", n), row("q", n), row("attn", n)
        delta, gate_up, act, scratch = row("delta", n), row("gate_up", n), row("act", n), \
            row("scratch", n)
        hidden = hidden.float().contiguous().clone()
        ops.fs_add_norm_rows(hidden.data_ptr(), None, None, blk.attn_norm, n, c.d_model,
                             c.norm_eps, scratch.data_ptr(), x.data_ptr())
        self.matmul(blk.wqkv, x, qkv)
        keys, values = self.decoder.cache_pointers(cache)
        cos, sin = self.decoder.rope_rows(self.decoder.layer_rope[index], start, start + n - 1)
        ops.fs_qkv_rows(qkv.data_ptr(), n, c.n_heads, c.n_kv_heads, c.head_dim, blk.q_norm,
                        blk.k_norm, c.norm_eps, cos, sin, c.rope_dims // 2, keys[index],
                        values[index], cache.capacity_tokens, start, q.data_ptr())
        self._attend(index, q, cache, start, attn, keys[index], values[index])
        self.matmul(blk.wo, attn, delta)
        ops.fs_add_norm_rows(hidden.data_ptr(), delta.data_ptr(), blk.post_attn_norm,
                             blk.ffn_norm, n, c.d_model, c.norm_eps, scratch.data_ptr(),
                             x.data_ptr())
        self.matmul(blk.w_gate_up, x, gate_up)
        glu(gate_up, bool(self.decoder.gelu), out=act)
        self.matmul(blk.w_down, act, delta)
        ops.fs_add_norm_rows(hidden.data_ptr(), delta.data_ptr(), blk.post_ffn_norm, None, n,
                             c.d_model, c.norm_eps, scratch.data_ptr(), None)
        return hidden

    def _attend(self, index: int, q: torch.Tensor, cache: KVCache, start: int,
                out: torch.Tensor, keys: int, values: int) -> None:
        """Attention of the query heads ``q`` (float32 ``(n_heads, n, head_dim)`` in an
        ``(n, q_dim)`` buffer) over keys ``0 .. start+n-1`` (the layer's cache slabs, at
        addresses ``keys`` and ``values``) into ``out`` (bfloat16 ``(n, q_dim)``)."""
        c, n = self.config, q.shape[0]
        window = c.layer_window(index)
        if start + n <= C_ATTENTION_MAX_KEYS:
            ok = self.ops.fs_attention_rows(q.data_ptr(), n, c.n_heads, c.n_kv_heads, c.head_dim,
                                            keys, values, cache.capacity_tokens,
                                            start, window, c.attention_scale, out.data_ptr())
            if not ok:
                raise MemoryError("no memory for the attention scratch")
            return
        end = start + n
        causal = start == 0 and (window == 0 or n <= window)
        mask = None if causal else attention_mask(torch.arange(start, end), end, window)
        heads = grouped_attention(q.view(c.n_heads, n, c.head_dim),
                                  cache.keys[index][:, :end], cache.values[index][:, :end], mask,
                                  c.attention_scale, causal)
        out.view(n, c.n_heads, c.head_dim).copy_(heads.transpose(0, 1))
