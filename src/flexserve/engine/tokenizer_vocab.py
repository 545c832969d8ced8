"""The tokenizer vocabulary as read from GGUF metadata (``tokenizer.ggml.*``).

Everything here is validated, because metadata is untrusted input: a malformed vocabulary
raises :class:`TokenizerError` naming the key that is wrong.

Token types (``tokenizer.ggml.token_type``) follow llama.cpp: 1 normal, 2 unknown, 3 control,
4 user-defined, 5 unused, 6 byte (``<0xNN>``). llama.cpp also promotes a few tokens to
*control* by their text (end-of-generation and fill-in-the-middle markers such as
``<|im_end|>``, ``<end_of_turn>`` or Gemma's ``</s>``) and stops generation on them; we do the
same so that parsing and stop tokens agree with llama.cpp.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flexserve.errors import TokenizerError

KEY = "tokenizer.ggml."
MAX_VOCAB_TOKENS = 4_000_000
MAX_TOKEN_CHARS = 65_536


class TokenType(enum.IntEnum):
    """GGUF token types (``tokenizer.ggml.token_type``)."""

    UNDEFINED = 0
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


# Texts llama.cpp treats as end of generation (and therefore as control tokens).
EOG_TEXTS = frozenset({
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "</s>",
})
# Fill-in-the-middle pad/repo/file-separator texts, which llama.cpp also counts as EOG.
FIM_EOG_TEXTS = frozenset({
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
    "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>",
    "<|file_sep|>",
})
# Other fill-in-the-middle markers llama.cpp detects by text (promoted to control only).
FIM_OTHER_TEXTS = frozenset({
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>",
})
MODELS = ("gpt2", "llama")
_ABSENT = object()  # _get default meaning "absent key gives None"


@dataclass(frozen=True)
class Vocab:
    """A validated vocabulary. ``types`` already includes llama.cpp's control promotions."""

    model: str
    pre: str
    tokens: tuple[str, ...]
    types: tuple[TokenType, ...]
    scores: tuple[float, ...]
    merges: tuple[tuple[str, str], ...]
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    add_bos: bool | None  # None: not in the GGUF, the tokenizer kind decides
    add_space_prefix: bool

    @property
    def size(self) -> int:
        return len(self.tokens)

    def eog_ids(self) -> frozenset[int]:
        """Token ids that end generation, as llama.cpp computes them."""
        by_text = EOG_TEXTS | FIM_EOG_TEXTS
        ids = {i for i, text in enumerate(self.tokens) if text in by_text}
        ids.update(i for i in (self.eos_id, self.eot_id) if i is not None)
        return frozenset(ids)


def vocab_from_metadata(metadata: Mapping[str, Any]) -> Vocab:
    """Read and validate the ``tokenizer.ggml.*`` keys of a GGUF metadata mapping."""
    model = _get(metadata, "model", str, None)
    if model not in MODELS:
        raise TokenizerError(f"unsupported tokenizer model {model!r}; supported: {MODELS}")
    tokens = _string_list(metadata, "tokens")
    types = _token_types(metadata, len(tokens))
    scores = _scores(metadata, len(tokens))
    merges = _merges(metadata) if model == "gpt2" else ()
    spm = model == "llama"
    return Vocab(
        model=model,
        pre=_get(metadata, "pre", str, "default"),
        tokens=tokens,
        types=_promote_control(tokens, types),
        scores=scores,
        merges=merges,
        bos_id=_token_id(metadata, "bos_token_id", len(tokens)),
        eos_id=_token_id(metadata, "eos_token_id", len(tokens)),
        eot_id=_token_id(metadata, "eot_token_id", len(tokens)),
        add_bos=_get(metadata, "add_bos_token", bool, _ABSENT),
        add_space_prefix=_get(metadata, "add_space_prefix", bool, spm),
    )


def _get(metadata: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    """``metadata[KEY + name]`` checked to be a ``kind``; ``default`` if absent (None: required,
    ``_ABSENT``: give None)."""
    key = KEY + name
    if key not in metadata:
        if default is None:
            raise TokenizerError(f"GGUF metadata has no {key}")
        return None if default is _ABSENT else default
    value = metadata[key]
    if kind is int and isinstance(value, bool):
        raise TokenizerError(f"{key} must be an integer, not a bool")
    if not isinstance(value, kind):
        raise TokenizerError(f"{key} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _list(metadata: Mapping[str, Any], name: str) -> Sequence[Any] | None:
    key = KEY + name
    if key not in metadata:
        return None
    value = metadata[key]
    if not isinstance(value, list | tuple):
        raise TokenizerError(f"{key} must be an array, got {type(value).__name__}")
    return value


def _string_list(metadata: Mapping[str, Any], name: str) -> tuple[str, ...]:
    values = _list(metadata, name)
    if not values:
        raise TokenizerError(f"GGUF metadata has no (or an empty) {KEY}{name}")
    if len(values) > MAX_VOCAB_TOKENS:
        raise TokenizerError(f"{KEY}{name} has {len(values)} entries, more than allowed")
    for i, value in enumerate(values):
        if not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS:
            raise TokenizerError(f"{KEY}{name}[{i}] is not a string of sane length")
    if name == "tokens" and len(set(values)) != len(values):
        raise TokenizerError(f"{KEY}tokens contains duplicate token texts")
    return tuple(values)


def _token_types(metadata: Mapping[str, Any], n_tokens: int) -> tuple[TokenType, ...]:
    values = _list(metadata, "token_type")
    if values is None:
        return (TokenType.NORMAL,) * n_tokens
    if len(values) != n_tokens:
        raise TokenizerError(f"{KEY}token_type has {len(values)} entries for {n_tokens} tokens")
    by_value = {int(kind): kind for kind in TokenType}
    try:
        return tuple(by_value[v] for v in values)
    except (KeyError, TypeError):
        bad = next(v for v in values if not isinstance(v, int) or v not in by_value)
        raise TokenizerError(f"{KEY}token_type has an unknown type {bad!r}") from None


def _scores(metadata: Mapping[str, Any], n_tokens: int) -> tuple[float, ...]:
    values = _list(metadata, "scores")
    if values is None:
        return (0.0,) * n_tokens
    if len(values) != n_tokens:
        raise TokenizerError(f"{KEY}scores has {len(values)} entries for {n_tokens} tokens")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise TokenizerError(f"{KEY}scores must be numbers")
    return tuple(float(v) for v in values)


def _merges(metadata: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    values = _list(metadata, "merges")
    if values is None:
        raise TokenizerError(f"a gpt2 tokenizer needs {KEY}merges")
    merges = []
    for i, value in enumerate(values):
        parts = value.split(" ") if isinstance(value, str) else []
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise TokenizerError(f"{KEY}merges[{i}] is not two tokens separated by one space")
        merges.append((parts[0], parts[1]))
    return tuple(merges)


def _token_id(metadata: Mapping[str, Any], name: str, n_tokens: int) -> int | None:
    key = KEY + name
    if key not in metadata:
        return None
    value = _get(metadata, name, int, None)
    if not 0 <= value < n_tokens:
        raise TokenizerError(f"{key} = {value} is outside the vocabulary (size {n_tokens})")
    return value


def _promote_control(
    tokens: tuple[str, ...], types: tuple[TokenType, ...]
) -> tuple[TokenType, ...]:
    by_text = EOG_TEXTS | FIM_EOG_TEXTS | FIM_OTHER_TEXTS
    return tuple(
        TokenType.CONTROL if text in by_text else kind
        for text, kind in zip(tokens, types, strict=True)
    )
