"""Splitting text on special tokens before the model tokenizer sees it, as llama.cpp does.

llama.cpp takes the special tokens (control, unknown and user-defined) longest text first and,
for each one in turn, splits every remaining piece of raw text at each of its occurrences
(left to right, non-overlapping). Control and unknown tokens only take part when
``parse_special`` is set; user-defined tokens (Gemma's whitespace runs, ``\\n``, HTML tags)
always do. The order matters when token texts overlap, so it is reproduced exactly rather
than with a leftmost-longest scan.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from flexserve.engine.tokenizer_vocab import TokenType, Vocab

Piece = str | int  # raw text, or the id of a special token

_ALWAYS = frozenset({TokenType.USER_DEFINED})
_PARSED = frozenset({TokenType.CONTROL, TokenType.UNKNOWN})


class SpecialSplitter:
    """Split text into raw-text pieces and special-token ids."""

    def __init__(self, vocab: Vocab) -> None:
        self._all = _index(vocab, _ALWAYS | _PARSED)
        self._user = _index(vocab, _ALWAYS)

    def split(self, text: str, parse_special: bool) -> list[Piece]:
        index = self._all if parse_special else self._user
        pieces: list[Piece] = [text] if text else []
        for token_text, token_id in _candidates(index, text):
            pieces = _split_all(pieces, token_text, token_id)
        return pieces


def _index(vocab: Vocab, kinds: frozenset[TokenType]) -> dict[str, list[tuple[str, int]]]:
    """Special tokens grouped by their first two characters, each group in llama.cpp order."""
    chosen = [
        (text, i)
        for i, (text, kind) in enumerate(zip(vocab.tokens, vocab.types, strict=True))
        if kind in kinds and text
    ]
    chosen.sort(key=lambda item: (-len(item[0].encode("utf-8")), item[1]))
    index: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for text, i in chosen:
        index[text[:2]].append((text, i))
    return dict(index)


def _candidates(index: dict[str, list[tuple[str, int]]], text: str) -> list[tuple[str, int]]:
    """Special tokens that occur in ``text``, longest first (ties by id)."""
    grams = {text[i : i + 2] for i in range(len(text) - 1)} | set(text)
    found = [
        item
        for gram in grams
        for item in index.get(gram, ())
        if item[0] in text
    ]
    found.sort(key=lambda item: (-len(item[0].encode("utf-8")), item[1]))
    return found


def _split_all(pieces: Sequence[Piece], token_text: str, token_id: int) -> list[Piece]:
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, int) or token_text not in piece:
            out.append(piece)
            continue
        parts = piece.split(token_text)
        for k, part in enumerate(parts):
            if k:
                out.append(token_id)
            if part:
                out.append(part)
    return out
