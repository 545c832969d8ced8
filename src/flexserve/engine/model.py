"""A decoder-only transformer that is assembled and run layer by layer.

Weights arrive per group (see :mod:`layers`) through :meth:`Transformer.install_group` and can
be dropped again, so a pipeline can stream layers through limited memory. The blocks cover
Llama, Qwen3 and Gemma 3; their differences come from :class:`ArchTraits`. Compute is float32
on one sequence: hidden states are ``(n_tokens, d_model)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from flexserve.engine.config import ModelConfig
from flexserve.engine.kv_cache import KVCache
from flexserve.engine.layers import EMBED_GROUP, OUTPUT_GROUP
from flexserve.engine.rope import RopeTable, apply_rope, unpermute_interleaved_rows
from flexserve.errors import ConfigError, ContextOverflowError, ModelFormatError

TokenIds = torch.Tensor | list[int]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm with a stored multiplier (GGUF Gemma files already hold ``1 + w``)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@dataclass(frozen=True)
class BlockWeights:
    """One block's weights in compute layout (Q/K/V and gate/up fused)."""

    attn_norm: torch.Tensor
    wqkv: torch.Tensor  # (q_dim + 2 * kv_dim, d_model), half-split RoPE row layout
    wo: torch.Tensor
    ffn_norm: torch.Tensor
    w_gate_up: torch.Tensor  # (2 * ffn_dim, d_model)
    w_down: torch.Tensor
    q_norm: torch.Tensor | None = None
    k_norm: torch.Tensor | None = None
    post_attn_norm: torch.Tensor | None = None
    post_ffn_norm: torch.Tensor | None = None


def _expect_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if tuple(tensor.shape) != shape:
        raise ModelFormatError(f"tensor {name} has shape {tuple(tensor.shape)}, expected {shape}")
    return tensor.float()


class _BlockBuilder:
    """Checks one block's tensors against the config and lays them out for compute."""

    def __init__(self, config: ModelConfig, index: int, weights: dict[str, torch.Tensor]) -> None:
        self.config = config
        self.prefix = f"blk.{index}."
        self.weights = dict(weights)

    def take(self, short: str, shape: tuple[int, ...]) -> torch.Tensor:
        name = self.prefix + short + ".weight"
        if name not in self.weights:
            raise ModelFormatError(f"tensor {name} is missing")
        return _expect_shape(name, self.weights.pop(name), shape)

    def build(self) -> BlockWeights:
        c, traits = self.config, self.config.traits
        d = (c.d_model,)
        block = BlockWeights(
            attn_norm=self.take("attn_norm", d),
            wqkv=self._qkv(),
            wo=self.take("attn_output", (c.d_model, c.q_dim)),
            ffn_norm=self.take("ffn_norm", d),
            w_gate_up=torch.cat((self.take("ffn_gate", (c.ffn_dim, c.d_model)),
                                 self.take("ffn_up", (c.ffn_dim, c.d_model)))),
            w_down=self.take("ffn_down", (c.d_model, c.ffn_dim)),
            q_norm=self.take("attn_q_norm", (c.head_dim,)) if traits.qk_norm else None,
            k_norm=self.take("attn_k_norm", (c.head_dim,)) if traits.qk_norm else None,
            post_attn_norm=self.take("post_attention_norm", d) if traits.sandwich_norms else None,
            post_ffn_norm=self.take("post_ffw_norm", d) if traits.sandwich_norms else None,
        )
        if self.weights:
            raise ModelFormatError(f"unexpected tensors in the block: {sorted(self.weights)}")
        return block

    def _qkv(self) -> torch.Tensor:
        c = self.config
        q = self.take("attn_q", (c.q_dim, c.d_model))
        k = self.take("attn_k", (c.kv_dim, c.d_model))
        v = self.take("attn_v", (c.kv_dim, c.d_model))
        if c.traits.qk_rows_interleaved:
            q = unpermute_interleaved_rows(q, c.n_heads)
            k = unpermute_interleaved_rows(k, c.n_kv_heads)
        return torch.cat((q, k, v))


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


def grouped_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """Softmax attention of ``(n_heads, n, d)`` queries over ``(n_kv_heads, T, d)`` keys/values.

    Query heads ``h*g .. h*g+g-1`` share KV head ``h`` (grouped-query attention), computed
    without materializing repeated keys.
    """
    n_heads, n_q, head_dim = q.shape
    n_kv = keys.shape[0]
    grouped = q.reshape(n_kv, n_heads // n_kv, n_q, head_dim)
    scores = torch.matmul(grouped, keys.unsqueeze(1).transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, values.unsqueeze(1)).reshape(n_heads, n_q, -1)


class Transformer:
    """Layer-by-layer transformer over installed weight groups."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.blocks: list[BlockWeights | None] = [None] * config.n_layers
        self.token_embedding: torch.Tensor | None = None
        self.output_norm: torch.Tensor | None = None
        self.output_weight: torch.Tensor | None = None
        self._rope_tables: dict[tuple[float, float], RopeTable] = {}

    # ----- weights -------------------------------------------------------------------------
    def install_group(self, name: str, weights: dict[str, torch.Tensor]) -> None:
        """Take over the weights of one group (``embed``, ``blk.<i>`` or ``output``)."""
        if name == EMBED_GROUP:
            self._install_embed(dict(weights))
        elif name == OUTPUT_GROUP:
            self._install_output(dict(weights))
        else:
            index = self._block_index(name)
            self.blocks[index] = _BlockBuilder(self.config, index, weights).build()

    def drop_group(self, name: str) -> None:
        """Release the weights of one group."""
        if name == EMBED_GROUP:
            self.token_embedding = None
        elif name == OUTPUT_GROUP:
            self.output_norm = self.output_weight = None
        else:
            self.blocks[self._block_index(name)] = None

    def installed_groups(self) -> list[str]:
        names = [EMBED_GROUP] if self.token_embedding is not None else []
        names += [f"blk.{i}" for i, b in enumerate(self.blocks) if b is not None]
        return names + ([OUTPUT_GROUP] if self.output_norm is not None else [])

    @property
    def head_needs_embedding(self) -> bool:
        """True when the output matrix is the (tied) token embedding."""
        return self.output_weight is None

    def _block_index(self, name: str) -> int:
        prefix, _, number = name.partition(".")
        if prefix != "blk" or not number.isdigit() or int(number) >= self.config.n_layers:
            n_layers = self.config.n_layers
            raise ConfigError(f"no layer group named {name!r} in a {n_layers}-layer model")
        return int(number)

    def _install_embed(self, weights: dict[str, torch.Tensor]) -> None:
        c = self.config
        embedding = weights.pop("token_embd.weight", None)
        if embedding is None:
            raise ModelFormatError("the embed group lacks token_embd.weight")
        if weights:
            raise ModelFormatError(f"unsupported global tensors: {sorted(weights)}")
        self.token_embedding = _expect_shape("token_embd.weight", embedding,
                                             (c.vocab_size, c.d_model))

    def _install_output(self, weights: dict[str, torch.Tensor]) -> None:
        c = self.config
        norm = weights.pop("output_norm.weight", None)
        if norm is None:
            raise ModelFormatError("the output group lacks output_norm.weight")
        self.output_norm = _expect_shape("output_norm.weight", norm, (c.d_model,))
        output = weights.pop("output.weight", None)
        if output is not None:
            output = _expect_shape("output.weight", output, (c.vocab_size, c.d_model))
        self.output_weight = output
        if weights:
            raise ModelFormatError(f"unexpected tensors in the output group: {sorted(weights)}")

    # ----- compute -------------------------------------------------------------------------
    def embed(self, token_ids: TokenIds) -> torch.Tensor:
        """Hidden states ``(n, d_model)`` for ``token_ids``."""
        if self.token_embedding is None:
            raise ConfigError("the embed group is not installed")
        ids = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ConfigError(f"token id out of range 0..{self.config.vocab_size - 1}")
        hidden = self.token_embedding[ids]
        if self.config.traits.scale_embeddings:
            hidden = hidden * torch.tensor(self.config.d_model**0.5, dtype=hidden.dtype)
        return hidden

    def forward_block(
        self, index: int, hidden: torch.Tensor, cache: KVCache, positions: torch.Tensor
    ) -> torch.Tensor:
        """Run block ``index`` on ``hidden`` at ``positions`` (consecutive), caching its K/V."""
        block = self.blocks[index]
        if block is None:
            raise ConfigError(f"layer group blk.{index} is not installed")
        eps = self.config.norm_eps
        attn_out = self._attention(index, block, rms_norm(hidden, block.attn_norm, eps),
                                   cache, positions)
        if block.post_attn_norm is not None:
            attn_out = rms_norm(attn_out, block.post_attn_norm, eps)
        hidden = hidden + attn_out
        ffn_out = self._ffn(block, rms_norm(hidden, block.ffn_norm, eps))
        if block.post_ffn_norm is not None:
            ffn_out = rms_norm(ffn_out, block.post_ffn_norm, eps)
        return hidden + ffn_out

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, vocab_size)`` from final hidden states."""
        if self.output_norm is None:
            raise ConfigError("the output group is not installed")
        matrix = self.output_weight if self.output_weight is not None else self.token_embedding
        if matrix is None:
            raise ConfigError("tied output needs the embed group installed")
        return F.linear(rms_norm(hidden, self.output_norm, self.config.norm_eps), matrix)

    def forward(self, token_ids: TokenIds, cache: KVCache, last_only: bool = False) -> torch.Tensor:
        """Append ``token_ids`` to the sequence in ``cache``; logits for them (or the last)."""
        hidden = self.embed(token_ids)
        n_tokens = hidden.shape[0]
        if n_tokens == 0:
            raise ConfigError("forward needs at least one token")
        cache.check_room(n_tokens)
        start = cache.length
        positions = torch.arange(start, start + n_tokens)
        for index in range(self.config.n_layers):
            hidden = self.forward_block(index, hidden, cache, positions)
        cache.commit(start + n_tokens)
        return self.head(hidden[-1:] if last_only else hidden)

    def new_cache(self, capacity_tokens: int | None = None) -> KVCache:
        return KVCache(self.config, capacity_tokens or self.config.context_length)

    # ----- internals -----------------------------------------------------------------------
    def _rope(self, index: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        key = (c.layer_rope_base(index), c.layer_rope_scale(index))
        table = self._rope_tables.get(key)
        if table is None:
            table = self._rope_tables[key] = RopeTable(key[0], c.rope_dims, key[1])
        return table.lookup(positions)

    def _attention(
        self, index: int, block: BlockWeights, x: torch.Tensor, cache: KVCache,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        c = self.config
        n_tokens = x.shape[0]
        start = int(positions[0])
        if start + n_tokens > cache.capacity_tokens:
            raise ContextOverflowError(f"positions up to {start + n_tokens} exceed the cache")
        qkv = F.linear(x, block.wqkv)
        q, k, v = qkv.split((c.q_dim, c.kv_dim, c.kv_dim), dim=-1)
        q = q.view(n_tokens, c.n_heads, c.head_dim).transpose(0, 1)
        k = k.view(n_tokens, c.n_kv_heads, c.head_dim).transpose(0, 1)
        v = v.view(n_tokens, c.n_kv_heads, c.head_dim).transpose(0, 1)
        if block.q_norm is not None and block.k_norm is not None:
            q = rms_norm(q, block.q_norm, c.norm_eps)
            k = rms_norm(k, block.k_norm, c.norm_eps)
        cos, sin = self._rope(index, positions)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values = cache.write(index, start, k, v)
        mask = attention_mask(positions, keys.shape[1], c.layer_window(index))
        out = grouped_attention(q, keys, values, mask, c.attention_scale)
        return F.linear(out.transpose(0, 1).reshape(n_tokens, c.q_dim), block.wo)

    def _ffn(self, block: BlockWeights, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, block.w_gate_up).chunk(2, dim=-1)
        if self.config.traits.activation == "gelu_tanh":
            activated = F.gelu(gate, approximate="tanh")
        else:
            activated = F.silu(gate)
        return F.linear(activated * up, block.w_down)
