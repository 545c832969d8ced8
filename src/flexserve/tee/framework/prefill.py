"""Prefill that follows the pipeline: each layer runs as soon as its weights are installed.

:class:`StreamedPrefill` holds the hidden states of the prompt between layers. When the last
layer has run, :class:`PrefilledModel` lets the engine's :class:`~flexserve.engine.generate.
Generator` continue from there: its first ``forward`` returns the logits the streamed prefill
computed, every later call is the transformer's own decode step. The arithmetic is the
engine's (``embed``, ``forward_block``, ``head``), so the logits equal ``Transformer.forward``.
"""

from __future__ import annotations

import torch

from flexserve.engine.kv_cache import KVCache
from flexserve.engine.layer_groups import EMBED_GROUP, OUTPUT_GROUP
from flexserve.engine.model import Transformer
from flexserve.errors import ConfigError


class StreamedPrefill:
    """Runs the prompt through the layers one installed group at a time."""

    def __init__(self, transformer: Transformer, prompt_ids: list[int],
                 capacity_tokens: int, prefix_kv: tuple[bytes, int] | None = None,
                 prefix_tokens: int = 0) -> None:
        """``prefix_kv``: an exported KV cache and the number of tokens it holds (a
        conversation's earlier turns); its first ``prefix_tokens`` positions, which match the
        prompt's first tokens, are reused and only the rest of the prompt is computed."""
        self.transformer = transformer
        self.prompt_ids = list(prompt_ids)
        if not 0 <= prefix_tokens < len(self.prompt_ids):
            raise ConfigError("a reused prefix must leave at least one prompt token to compute")
        stored = prefix_kv[1] if prefix_kv is not None else 0
        self.cache = transformer.new_cache(max(capacity_tokens, stored))
        if prefix_tokens:
            assert prefix_kv is not None and stored >= prefix_tokens
            self.cache.import_bytes(prefix_kv[0], stored)
            self.cache.truncate(prefix_tokens)
        self.cache.check_room(len(self.prompt_ids) - prefix_tokens)
        self.prefix_tokens = prefix_tokens
        self.positions = torch.arange(prefix_tokens, len(self.prompt_ids))
        self.hidden: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def run_group(self, name: str) -> bool:
        """Compute what group ``name`` contributes; True if it did matrix work (an NPU job)."""
        if name == EMBED_GROUP:
            self.hidden = self.transformer.embed(self.prompt_ids[self.prefix_tokens:])
            return False
        if self.hidden is None:
            raise ConfigError("the embedding must run before the other layers")
        if name == OUTPUT_GROUP:
            self.cache.commit(len(self.prompt_ids))
            self.logits = self.transformer.head(self.hidden[-1:])
            return True
        index = int(name.split(".")[1])
        self.hidden = self.transformer.forward_block(index, self.hidden, self.cache,
                                                     self.positions)
        return True


class PrefilledModel:
    """The transformer, seen by the Generator as if it had just prefilled the prompt."""

    def __init__(self, prefill: StreamedPrefill) -> None:
        if prefill.logits is None:
            raise ConfigError("the prefill has not finished")
        self.transformer = prefill.transformer
        self.config = prefill.transformer.config
        self._cache: KVCache = prefill.cache
        self._first: torch.Tensor | None = prefill.logits
        self._n_prompt = len(prefill.prompt_ids)

    def new_cache(self, capacity_tokens: int | None = None) -> KVCache:
        if capacity_tokens is not None and capacity_tokens > self._cache.capacity_tokens:
            raise ConfigError("the prefill cache is smaller than the request needs")
        return self._cache

    def forward(self, token_ids: list[int] | torch.Tensor, cache: KVCache,
                last_only: bool = False) -> torch.Tensor:
        if self._first is not None:
            if cache is not self._cache or len(token_ids) != self._n_prompt:
                raise ConfigError("the first forward must be the prefilled prompt")
            first, self._first = self._first, None
            return first
        return self.transformer.forward(token_ids, cache, last_only)
