"""Choosing the next token: validated sampling parameters and a seeded sampler.

Order of operations on the logits: repetition penalty, then greedy argmax if temperature is 0,
else temperature, top-k, top-p (nucleus), min-p, and one draw from a seeded
``torch.Generator`` (same seed and inputs, same tokens).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flexserve.errors import ConfigError

MAX_STOP_STRINGS = 16
MAX_SEED = 2**63 - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop. Invalid values raise :class:`ConfigError`."""

    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # nucleus mass in (0, 1]; 1: off
    min_p: float = 0.0  # drop tokens below min_p * p(best); 0: off
    repetition_penalty: float = 1.0  # > 1 discourages tokens already in the sequence
    seed: int | None = None  # None: a fresh random seed per request
    max_tokens: int = 128
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.stop, str) or not isinstance(self.stop, Sequence):
            raise ConfigError("stop must be a list of strings")
        object.__setattr__(self, "stop", tuple(self.stop))
        self._check_numbers()
        self._check_stop()

    def _check_numbers(self) -> None:
        if not _is_number(self.temperature) or self.temperature < 0:
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.temperature!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise ConfigError(f"top_k must be an integer >= 0, got {self.top_k!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not _is_number(self.min_p) or not 0 <= self.min_p < 1:
            raise ConfigError(f"min_p must be in [0, 1), got {self.min_p!r}")
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ConfigError(
                f"repetition_penalty must be a finite number > 0, got {self.repetition_penalty!r}"
            )
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED):
            raise ConfigError(f"seed must be an integer in 0..2^63-1, got {self.seed!r}")
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")

    def _check_stop(self) -> None:
        if len(self.stop) > MAX_STOP_STRINGS:
            raise ConfigError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(self.stop)}")
        for text in self.stop:
            if not isinstance(text, str) or not text:
                raise ConfigError(f"stop strings must be non-empty strings, got {text!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_repetition_penalty(
    logits: torch.Tensor, history: Sequence[int], penalty: float
) -> torch.Tensor:
    """Divide positive (multiply negative) logits of tokens seen in ``history`` by ``penalty``."""
    if penalty == 1.0 or not history:
        return logits
    seen = torch.unique(torch.as_tensor(list(history), dtype=torch.long))
    picked = logits[seen]
    logits = logits.clone()
    logits[seen] = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits


def filter_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    if top_k <= 0 or top_k >= logits.numel():
        return logits
    kth = torch.topk(logits, top_k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_before >= top_p
    drop_sorted[0] = False  # the most likely token is always kept, however small top_p is
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    if min_p <= 0:
        return logits
    probs = torch.softmax(logits, dim=-1)
    return logits.masked_fill(probs < min_p * probs.max(), float("-inf"))


def _tempered(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` without overflow: shifted so the largest is 0 and divided in
    float64, a temperature near 0 sends every other token to -inf (the greedy limit), never NaN."""
    shifted = logits.double() - logits.max().double()
    return shifted / temperature


class Sampler:
    """Picks tokens for one request; its generator is seeded from ``params.seed``."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.seed = params.seed if params.seed is not None else secrets.randbelow(MAX_SEED)
        self.generator = torch.Generator().manual_seed(self.seed)

    def sample(self, logits: torch.Tensor, history: Sequence[int] = ()) -> int:
        """The next token id from 1-D ``logits``; ``history`` feeds the repetition penalty."""
        p = self.params
        logits = apply_repetition_penalty(logits.float(), history, p.repetition_penalty)
        if p.greedy:
            return int(torch.argmax(logits))
        logits = filter_top_k(_tempered(logits, p.temperature), p.top_k)
        logits = filter_min_p(filter_top_p(logits, p.top_p), p.min_p)
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))
