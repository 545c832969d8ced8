"""A decoder-only transformer that is assembled and run layer by layer.

Weights arrive per group (see :mod:`layers`) through :meth:`Transformer.install_group` and can
be dropped again, so a pipeline can stream layers through limited memory. The blocks cover
Llama, Qwen3 and Gemma 3; their differences come from :class:`ArchTraits`. Hidden states are
float32 ``(n_tokens, d_model)`` on one sequence; matrices follow the transformer's
:class:`~flexserve.engine.matrix.WeightFormat` (float32 exact, or int4 planes with bfloat16
matmul inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flexserve.engine.attention import attention_mask, grouped_attention, sees_all_keys
from flexserve.engine.config import ModelConfig
from flexserve.engine.fused_decode import FusedDecoder
from flexserve.engine.fused_prefill import FusedPrefill
from flexserve.engine.glu import glu
from flexserve.engine.kv_cache import KVCache
from flexserve.engine.layers import EMBED_GROUP, OUTPUT_GROUP, GroupWeights
from flexserve.engine.matrix import (
    DEFAULT_WEIGHT_FORMAT,
    Matrix,
    WeightFormat,
    WeightPart,
    make_matrix,
)
from flexserve.engine.native.build import load_decode_ops
from flexserve.engine.nibble_planes import NibblePlanes
from flexserve.engine.rope import RopeTable, interleaved_row_order, rotation_matrices
from flexserve.errors import ConfigError, ContextOverflowError, ModelFormatError

TokenIds = torch.Tensor | list[int]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm with a stored multiplier (GGUF Gemma files already hold ``1 + w``)."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@dataclass(frozen=True)
class BlockWeights:
    """One block's weights in compute layout (Q/K/V and gate/up fused)."""

    attn_norm: torch.Tensor
    wqkv: Matrix  # (q_dim + 2 * kv_dim, d_model), half-split RoPE row layout
    wo: Matrix
    ffn_norm: torch.Tensor
    w_gate_up: Matrix  # (2 * ffn_dim, d_model)
    w_down: Matrix
    q_norm: torch.Tensor | None = None
    k_norm: torch.Tensor | None = None
    post_attn_norm: torch.Tensor | None = None
    post_ffn_norm: torch.Tensor | None = None


def _expect_shape(name: str, part: WeightPart, shape: tuple[int, ...]) -> WeightPart:
    got = part.shape if isinstance(part, NibblePlanes) else tuple(part.shape)
    if tuple(got) != shape:
        raise ModelFormatError(f"tensor {name} has shape {tuple(got)}, expected {shape}")
    return part if isinstance(part, NibblePlanes) else part.float()


def _expect_vector(name: str, part: WeightPart, shape: tuple[int, ...]) -> torch.Tensor:
    if isinstance(part, NibblePlanes):
        part = part.dequantize()
    vector = _expect_shape(name, part, shape)
    assert isinstance(vector, torch.Tensor)
    return vector


def _select_rows(part: WeightPart, order: torch.Tensor) -> WeightPart:
    return part.select_rows(order) if isinstance(part, NibblePlanes) else part[order]


class _BlockBuilder:
    """Checks one block's tensors against the config and lays them out for compute."""

    def __init__(self, config: ModelConfig, index: int, weights: GroupWeights,
                 weight_format: WeightFormat) -> None:
        self.config = config
        self.prefix = f"blk.{index}."
        self.weights = dict(weights)
        self.weight_format = weight_format

    def _pop(self, short: str) -> tuple[str, WeightPart]:
        name = self.prefix + short + ".weight"
        if name not in self.weights:
            raise ModelFormatError(f"tensor {name} is missing")
        return name, self.weights.pop(name)

    def take(self, short: str, shape: tuple[int, ...]) -> torch.Tensor:
        return _expect_vector(*self._pop(short), shape)

    def take_part(self, short: str, shape: tuple[int, ...]) -> WeightPart:
        return _expect_shape(*self._pop(short), shape)

    def matrix(self, *parts: WeightPart) -> Matrix:
        return make_matrix(list(parts), self.weight_format)

    def build(self) -> BlockWeights:
        c, traits = self.config, self.config.traits
        d = (c.d_model,)
        block = BlockWeights(
            attn_norm=self.take("attn_norm", d),
            wqkv=self._qkv(),
            wo=self.matrix(self.take_part("attn_output", (c.d_model, c.q_dim))),
            ffn_norm=self.take("ffn_norm", d),
            w_gate_up=self.matrix(self.take_part("ffn_gate", (c.ffn_dim, c.d_model)),
                                  self.take_part("ffn_up", (c.ffn_dim, c.d_model))),
            w_down=self.matrix(self.take_part("ffn_down", (c.d_model, c.ffn_dim))),
            q_norm=self.take("attn_q_norm", (c.head_dim,)) if traits.qk_norm else None,
            k_norm=self.take("attn_k_norm", (c.head_dim,)) if traits.qk_norm else None,
            post_attn_norm=self.take("post_attention_norm", d) if traits.sandwich_norms else None,
            post_ffn_norm=self.take("post_ffw_norm", d) if traits.sandwich_norms else None,
        )
        if self.weights:
            raise ModelFormatError(f"unexpected tensors in the block: {sorted(self.weights)}")
        return block

    def _qkv(self) -> Matrix:
        c = self.config
        q = self.take_part("attn_q", (c.q_dim, c.d_model))
        k = self.take_part("attn_k", (c.kv_dim, c.d_model))
        v = self.take_part("attn_v", (c.kv_dim, c.d_model))
        if c.traits.qk_rows_interleaved:
            q = _select_rows(q, interleaved_row_order(c.q_dim, c.n_heads))
            k = _select_rows(k, interleaved_row_order(c.kv_dim, c.n_kv_heads))
        return self.matrix(q, k, v)


class Transformer:
    """Layer-by-layer transformer over installed weight groups."""

    def __init__(
        self, config: ModelConfig, weight_format: WeightFormat | str = DEFAULT_WEIGHT_FORMAT
    ) -> None:
        self.config = config
        self.weight_format = WeightFormat.parse(weight_format)
        self.blocks: list[BlockWeights | None] = [None] * config.n_layers
        self.token_embedding: Matrix | None = None
        self.output_norm: torch.Tensor | None = None
        self.output_weight: Matrix | None = None
        self._rope_tables: dict[tuple[float, float], RopeTable] = {}
        self._rope_last: dict[tuple[float, float], tuple[int, int, torch.Tensor]] = {}
        # policy: the fused C steps (decode token, prefill blocks) in the int4 format
        self.native_fused = self.weight_format is WeightFormat.INT4
        self._fused: FusedDecoder | None = None
        self._prefill: FusedPrefill | None = None

    # ----- weights -------------------------------------------------------------------------
    def install_group(self, name: str, weights: GroupWeights) -> None:
        """Take over the weights of one group (``embed``, ``blk.<i>`` or ``output``)."""
        if name == EMBED_GROUP:
            self._install_embed(dict(weights))
        elif name == OUTPUT_GROUP:
            self._install_output(dict(weights))
        else:
            index = self._block_index(name)
            builder = _BlockBuilder(self.config, index, weights, self.weight_format)
            self.blocks[index] = builder.build()

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

    def _install_embed(self, weights: GroupWeights) -> None:
        c = self.config
        embedding = weights.pop("token_embd.weight", None)
        if embedding is None:
            raise ModelFormatError("the embed group lacks token_embd.weight")
        if weights:
            raise ModelFormatError(f"unsupported global tensors: {sorted(weights)}")
        part = _expect_shape("token_embd.weight", embedding, (c.vocab_size, c.d_model))
        self.token_embedding = make_matrix([part], self.weight_format)

    def _install_output(self, weights: GroupWeights) -> None:
        c = self.config
        norm = weights.pop("output_norm.weight", None)
        if norm is None:
            raise ModelFormatError("the output group lacks output_norm.weight")
        self.output_norm = _expect_vector("output_norm.weight", norm, (c.d_model,))
        output = weights.pop("output.weight", None)
        self.output_weight = None
        if output is not None:
            part = _expect_shape("output.weight", output, (c.vocab_size, c.d_model))
            self.output_weight = make_matrix([part], self.weight_format)
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
        hidden = self.token_embedding.rows(ids)
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
        fused = self._fused_prefill() if hidden.shape[0] > 1 else None
        if fused is not None:
            return fused.block(index, hidden, cache, int(positions[0]))
        eps = self.config.norm_eps
        attn_out = self._attention(index, block, rms_norm(hidden, block.attn_norm, eps),
                                   cache, positions)
        if block.post_attn_norm is not None:
            attn_out = rms_norm(attn_out.float(), block.post_attn_norm, eps)
        hidden = hidden + attn_out
        ffn_out = self._ffn(block, rms_norm(hidden, block.ffn_norm, eps))
        if block.post_ffn_norm is not None:
            ffn_out = rms_norm(ffn_out.float(), block.post_ffn_norm, eps)
        return hidden + ffn_out

    def head_matrix(self) -> Matrix:
        """The output matrix: ``output.weight``, or the token embedding when tied."""
        matrix = self.output_weight if self.output_weight is not None else self.token_embedding
        if matrix is None:
            raise ConfigError("tied output needs the embed group installed")
        return matrix

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, vocab_size)`` from final hidden states, float32 sums where the head's
        path computes them (a bfloat16 rounding would tie close candidates: 25.33 and 25.24
        both round to 25.25 and the argmax turns on the vocabulary order)."""
        if self.output_norm is None:
            raise ConfigError("the output group is not installed")
        matrix = self.head_matrix()
        normed = rms_norm(hidden, self.output_norm, self.config.norm_eps)
        return matrix(normed, torch.float32).float()

    def forward(self, token_ids: TokenIds, cache: KVCache, last_only: bool = False) -> torch.Tensor:
        """Append ``token_ids`` to the sequence in ``cache``; logits for them (or the last)."""
        hidden = self.embed(token_ids)
        n_tokens = hidden.shape[0]
        if n_tokens == 0:
            raise ConfigError("forward needs at least one token")
        cache.check_room(n_tokens)
        start = cache.length
        fused = self._fused_decoder() if n_tokens == 1 else None
        if fused is not None:
            logits = fused.step(hidden, cache, start)
            cache.commit(start + 1)
            return logits
        positions = torch.arange(start, start + n_tokens)
        for index in range(self.config.n_layers):
            hidden = self.forward_block(index, hidden, cache, positions)
        cache.commit(start + n_tokens)
        return self.head(hidden[-1:] if last_only else hidden)

    def new_cache(self, capacity_tokens: int | None = None) -> KVCache:
        return KVCache(self.config, capacity_tokens or self.config.context_length)

    def _fused_decoder(self) -> FusedDecoder | None:
        """The fused single-token step, when enabled and its C helpers could be built."""
        if not self.native_fused or self.weight_format is not WeightFormat.INT4:
            return None
        if self._fused is None:
            ops = load_decode_ops()
            if ops is None:
                self.native_fused = False
                return None
            self._fused = FusedDecoder(self, ops)
        return self._fused

    def _fused_prefill(self) -> FusedPrefill | None:
        """The fused prefill block, under the same policy and build as the fused step."""
        decoder = self._fused_decoder()
        if decoder is None:
            return None
        if self._prefill is None or self._prefill.decoder is not decoder:
            self._prefill = FusedPrefill(decoder)
        return self._prefill

    # ----- internals -----------------------------------------------------------------------
    def _rope(self, index: int, positions: torch.Tensor, start: int) -> torch.Tensor:
        """RoPE rotation matrices ``(n, head_dim, head_dim)``, shared by the layers."""
        c = self.config
        key = (c.layer_rope_base(index), c.layer_rope_scale(index))
        last = self._rope_last.get(key)
        if last is not None and last[:2] == (start, positions.shape[0]):
            return last[2]
        table = self._rope_tables.get(key)
        if table is None:
            table = self._rope_tables[key] = RopeTable(key[0], c.rope_dims, key[1])
        rotations = rotation_matrices(*table.lookup(positions), c.head_dim)
        self._rope_last[key] = (start, positions.shape[0], rotations)
        return rotations

    def _attention(
        self, index: int, block: BlockWeights, x: torch.Tensor, cache: KVCache,
        positions: torch.Tensor,
    ) -> torch.Tensor:
        c = self.config
        n_tokens = x.shape[0]
        start = int(positions[0])
        if start + n_tokens > cache.capacity_tokens:
            raise ContextOverflowError(f"positions up to {start + n_tokens} exceed the cache")
        qkv = block.wqkv(x).float().view(n_tokens, c.n_heads + 2 * c.n_kv_heads, c.head_dim)
        q, k = self._rotated_qk(index, block, qkv, positions, start)
        v = qkv[:, c.n_heads + c.n_kv_heads :]
        keys, values = cache.write(index, start, k.transpose(0, 1), v.transpose(0, 1))
        window = c.layer_window(index)
        causal = start == 0 and (window == 0 or n_tokens <= window)
        mask = None if causal or sees_all_keys(start, n_tokens, window) else attention_mask(
            positions, keys.shape[1], window)
        out = grouped_attention(q.transpose(0, 1), keys, values, mask, c.attention_scale,
                                causal)
        return block.wo(out.transpose(0, 1).reshape(n_tokens, c.q_dim))

    def _rotated_qk(
        self, index: int, block: BlockWeights, qkv: torch.Tensor, positions: torch.Tensor,
        start: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Q and K heads ``(n, heads, head_dim)`` after the optional QK norms and RoPE."""
        c = self.config
        rotations = self._rope(index, positions, start)
        qk = qkv[:, : c.n_heads + c.n_kv_heads]
        if block.q_norm is not None and block.k_norm is not None:
            qk = torch.cat((rms_norm(qk[:, : c.n_heads], block.q_norm, c.norm_eps),
                            rms_norm(qk[:, c.n_heads :], block.k_norm, c.norm_eps)), dim=1)
        rotated = torch.bmm(qk, rotations)
        return rotated[:, : c.n_heads], rotated[:, c.n_heads :]

    def _ffn(self, block: BlockWeights, x: torch.Tensor) -> torch.Tensor:
        gelu = self.config.traits.activation == "gelu_tanh"
        return block.w_down(glu(block.w_gate_up(x), gelu))
