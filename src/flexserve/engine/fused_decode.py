"""One decode step (a single new token) with the non-matmul work fused into C calls.

Eager torch spends most of a decode step on ~35 tiny operations per block (norms, casts, RoPE,
KV writes, attention), each a few microseconds of dispatch. This step keeps torch for the four
weight matmuls of a block (the int4 kernel) and does everything between them in three calls of
:mod:`flexserve.engine.native` (``decode_ops.c``) on preallocated buffers: residual add + RMSNorm
(+ bfloat16 rounding), QK norm + RoPE + KV-cache write + attention, and the gated activation.
It computes what :meth:`Transformer.forward_block` computes for the ``int4`` weight format (the
same roundings to bfloat16, float32 everywhere else) and is checked against it in the tests.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from flexserve.engine.kv_cache import KVCache
from flexserve.engine.native_matvec import MatVec, MatVecRunner, plan
from flexserve.engine.rope import RopeTable
from flexserve.errors import ConfigError

if TYPE_CHECKING:
    from flexserve.engine.model import BlockWeights, Transformer

_FLOAT_BYTES = 4


def _ptr(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


@dataclass(frozen=True)
class BlockPointers:
    block: BlockWeights  # held so the addresses below stay valid
    attn_norm: int
    ffn_norm: int
    q_norm: int | None
    k_norm: int | None
    post_attn_norm: int | None
    post_ffn_norm: int | None
    wqkv: MatVec
    wo: MatVec
    w_gate_up: MatVec
    w_down: MatVec


def _vector(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else tensor.float().contiguous()


class FusedDecoder:
    """Runs :meth:`step` for one transformer; its buffers are reused across steps."""

    def __init__(self, model: Transformer, ops: ctypes.CDLL) -> None:
        c = model.config
        self.model, self.ops, self.config = model, ops, c
        bf16 = torch.bfloat16
        self.x = torch.empty(1, c.d_model, dtype=bf16)  # normed input of qkv, gate/up, head
        self.qkv = torch.empty(1, c.q_dim + 2 * c.kv_dim, dtype=bf16)
        self.attn = torch.empty(1, c.q_dim, dtype=bf16)
        self.gate_up = torch.empty(1, 2 * c.ffn_dim, dtype=bf16)
        self.act = torch.empty(1, c.ffn_dim, dtype=bf16)
        self.delta = torch.empty(1, c.d_model, dtype=bf16)  # wo and w_down outputs
        widest = max(c.d_model, c.q_dim, c.ffn_dim)
        self.matvec = MatVecRunner(ops, max(c.vocab_size, 2 * c.ffn_dim, c.q_dim + 2 * c.kv_dim),
                                   widest)
        self._head: tuple[object, MatVec] | None = None
        self.scratch = torch.empty(0)
        self.gelu = int(c.traits.activation == "gelu_tanh")
        keys = [(c.layer_rope_base(i), c.layer_rope_scale(i)) for i in range(c.n_layers)]
        self.tables = {key: RopeTable(key[0], c.rope_dims, key[1]) for key in set(keys)}
        self.layer_rope = keys
        self.windows = [c.layer_window(i) for i in range(c.n_layers)]
        self._blocks: dict[int, tuple[BlockPointers, list[torch.Tensor | None]]] = {}
        self._cache: tuple[KVCache, list[int], list[int]] | None = None

    # ----- cached addresses --------------------------------------------------------------
    def block_pointers(self, index: int) -> BlockPointers:
        """Block ``index``'s vector addresses and matrix plans (cached while installed)."""
        block = self.model.blocks[index]
        if block is None:
            raise ConfigError(f"layer group blk.{index} is not installed")
        entry = self._blocks.get(index)
        if entry is not None and entry[0].block is block:
            return entry[0]
        vectors = [_vector(v) for v in (block.attn_norm, block.ffn_norm, block.q_norm,
                                        block.k_norm, block.post_attn_norm, block.post_ffn_norm)]
        attn_norm, ffn_norm, *rest = (_ptr(v) for v in vectors)
        assert attn_norm is not None and ffn_norm is not None
        matrices = (plan(m, self.ops) for m in (block.wqkv, block.wo, block.w_gate_up,
                                                 block.w_down))
        pointers = BlockPointers(block, attn_norm, ffn_norm, *rest, *matrices)
        self._blocks[index] = (pointers, vectors)
        return pointers

    def cache_pointers(self, cache: KVCache) -> tuple[list[int], list[int]]:
        """Per layer, the addresses of the cache's key and value slabs (float32 only)."""
        if self._cache is None or self._cache[0] is not cache:
            if cache.keys[0].dtype is not torch.float32:
                raise ConfigError("fused decode needs a float32 KV cache")
            self._cache = (cache, [k.data_ptr() for k in cache.keys],
                           [v.data_ptr() for v in cache.values])
        return self._cache[1], self._cache[2]

    def rope_rows(self, key: tuple[float, float], first: int, last: int) -> tuple[int, int]:
        """Addresses of the cos and sin rows of positions ``first .. last`` (consecutive) in
        the RoPE table ``key``, grown to hold ``last``."""
        table = self.tables[key]
        if table.cos.shape[0] <= last:
            table.lookup(torch.tensor([last]))  # grows the table
        offset = first * (self.config.rope_dims // 2) * _FLOAT_BYTES
        return table.cos.data_ptr() + offset, table.sin.data_ptr() + offset

    def _rope_rows(self, position: int) -> dict[tuple[float, float], tuple[int, int]]:
        return {key: self.rope_rows(key, position, position) for key in self.tables}

    def _scratch(self, capacity_tokens: int) -> int:
        c = self.config
        needed = max(c.d_model, c.n_heads * (2 * c.head_dim + capacity_tokens))
        if self.scratch.numel() < needed:
            self.scratch = torch.empty(needed)
        return self.scratch.data_ptr()

    # ----- the step ----------------------------------------------------------------------
    def _norm(self, hidden: torch.Tensor, delta: torch.Tensor | None, post: int | None,
              weight: int, scratch: int) -> None:
        c = self.config
        self.ops.fs_add_norm(hidden.data_ptr(), None if delta is None else delta.data_ptr(),
                             post, weight, c.d_model, c.norm_eps, scratch, self.x.data_ptr())

    def step(self, hidden: torch.Tensor, cache: KVCache, position: int) -> torch.Tensor:
        """Logits ``(1, vocab)`` for the token whose embedding is ``hidden`` ``(1, d_model)``
        at ``position``; writes its keys/values into ``cache`` (which the caller commits)."""
        c, matvec = self.config, self.matvec
        if position >= cache.capacity_tokens:
            raise ConfigError(f"position {position} is outside the KV cache")
        hidden = hidden.float().contiguous().clone()
        scratch = self._scratch(cache.capacity_tokens)
        keys, values = self.cache_pointers(cache)
        rope_rows = self._rope_rows(position)
        block = self.block_pointers(0)
        self._norm(hidden, None, None, block.attn_norm, scratch)
        for index in range(c.n_layers):
            matvec(block.wqkv, self.x, self.qkv)
            cos_row, sin_row = rope_rows[self.layer_rope[index]]
            self.ops.fs_attention(
                self.qkv.data_ptr(), c.n_heads, c.n_kv_heads, c.head_dim, block.q_norm,
                block.k_norm, c.norm_eps, cos_row, sin_row, c.rope_dims // 2, keys[index],
                values[index], cache.capacity_tokens, position, self.windows[index],
                c.attention_scale, scratch, self.attn.data_ptr())
            matvec(block.wo, self.attn, self.delta)
            self._norm(hidden, self.delta, block.post_attn_norm, block.ffn_norm, scratch)
            matvec(block.w_gate_up, self.x, self.gate_up)
            self.ops.fs_glu(self.gate_up.data_ptr(), c.ffn_dim, self.gelu, self.act.data_ptr())
            matvec(block.w_down, self.act, self.delta)
            last = index + 1 == c.n_layers
            following = self._output_norm() if last else self.block_pointers(index + 1).attn_norm
            self._norm(hidden, self.delta, block.post_ffn_norm, following, scratch)
            if not last:
                block = self.block_pointers(index + 1)
        logits = torch.empty(1, c.vocab_size)
        matvec(self._head_matvec(), self.x, logits)
        return logits

    def _head_matvec(self) -> MatVec:
        matrix = self.model.head_matrix()
        if self._head is None or self._head[0] is not matrix:
            self._head = (matrix, plan(matrix, self.ops))
        return self._head[1]

    def _output_norm(self) -> int:
        norm = self.model.output_norm
        if norm is None:
            raise ConfigError("the output group is not installed")
        if norm.dtype is not torch.float32 or not norm.is_contiguous():
            raise ConfigError("the output norm must be a contiguous float32 vector")
        return norm.data_ptr()
