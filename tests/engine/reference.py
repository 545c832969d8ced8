"""Helpers for comparing our engine with transformers on the real bundled models."""

from __future__ import annotations

from pathlib import Path

import torch

from flexserve.engine.kv_cache import KVCache
from flexserve.engine.model import Transformer

PLAIN_TEXT = (
    "The Flex-Monitor keeps model weights in protected memory while the phone keeps running "
    "other apps. Each layer is decrypted just before it is needed, and the pages go back to "
    "the operating system when memory runs short. "
)


def load_reference(path: Path) -> torch.nn.Module:
    """transformers' own GGUF loader (dequantizes to float32)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    return model.eval()


def reference_logits(model: torch.nn.Module, ids: list[int], keep_last: int) -> torch.Tensor:
    with torch.no_grad():
        out = model(torch.tensor([ids]), logits_to_keep=keep_last)
    return out.logits[0]


def our_logits(model: Transformer, ids: list[int], keep_last: int) -> torch.Tensor:
    """Logits of the last ``keep_last`` positions, run through the layer-by-layer API."""
    cache = KVCache(model.config, len(ids))
    positions = torch.arange(len(ids))
    hidden = model.embed(ids)
    for index in range(model.config.n_layers):
        hidden = model.forward_block(index, hidden, cache, positions)
    return model.head(hidden[-keep_last:])


def reference_greedy(model: torch.nn.Module, ids: list[int], n_tokens: int) -> list[int]:
    """Greedy continuation by transformers, step by step (no end-of-text stop)."""
    out: list[int] = []
    with torch.no_grad():
        result = model(torch.tensor([ids]), use_cache=True, logits_to_keep=1)
        for _ in range(n_tokens):
            token = int(result.logits[0, -1].argmax())
            out.append(token)
            result = model(torch.tensor([[token]]), past_key_values=result.past_key_values,
                           use_cache=True, logits_to_keep=1)
    return out
