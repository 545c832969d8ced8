"""SentencePiece-style vocabularies (``tokenizer.ggml.model == "llama"``, e.g. Gemma 3).

llama.cpp tokenizes such a vocabulary by merging: spaces become ``▁``, the text starts as one
symbol per character, and the adjacent pair whose concatenation is a vocabulary token with
the highest score is merged first (leftmost on ties), until no pair forms a token. A
character with no token of its own falls back to its UTF-8 bytes as ``<0xNN>`` tokens.

That is a BPE whose merges are every split of every token into two tokens, ranked by the
score of the token they form; we build exactly that merge list for the ``tokenizers`` BPE
model with byte fallback.
"""

from __future__ import annotations

import re

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from flexserve.engine.tokenizer_vocab import TokenType, Vocab
from flexserve.errors import TokenizerError

SPACE_MARK = "▁"
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class SentencePieceBPE:
    """Encode raw text (no special tokens) and give each normal token's bytes."""

    default_add_bos = True  # llama.cpp's default for SentencePiece vocabularies

    def __init__(self, vocab: Vocab) -> None:
        self._vocab = vocab
        self._hf = _build(vocab)

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text.replace(" ", SPACE_MARK), add_special_tokens=False).ids

    def normal_bytes(self, token_id: int) -> bytes:
        return self._vocab.tokens[token_id].replace(SPACE_MARK, " ").encode("utf-8")


def byte_token_value(text: str) -> int | None:
    """The byte a ``<0xNN>`` token stands for, or None for any other text."""
    match = _BYTE_TOKEN.fullmatch(text)
    return int(match.group(1), 16) if match else None


def merges_by_score(vocab: Vocab, ids: dict[str, int]) -> list[tuple[str, str]]:
    """Every (left, right) split of a token into two tokens, best-scoring result first."""
    ranked: list[tuple[float, int, int, str, str]] = []
    for token_id, text in enumerate(vocab.tokens):
        score = vocab.scores[token_id]
        for cut in range(1, len(text)):
            left, right = text[:cut], text[cut:]
            if left in ids and right in ids:
                ranked.append((-score, token_id, cut, left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _build(vocab: Vocab) -> HFTokenizer:
    ids = {text: i for i, text in enumerate(vocab.tokens)}
    byte_ids = [ids.get(f"<0x{b:02X}>") for b in range(256)]
    if None in byte_ids:
        raise TokenizerError("SentencePiece vocabulary lacks some <0xNN> byte tokens")
    if any(vocab.types[i] != TokenType.BYTE for i in byte_ids if i is not None):
        raise TokenizerError("a <0xNN> token is not of the byte token type")
    bpe = models.BPE(vocab=ids, merges=merges_by_score(vocab, ids), byte_fallback=True)
    return HFTokenizer(bpe)
