"""The LLM engine's tokenizer, built from GGUF metadata; llama.cpp is the reference.

Two vocabulary kinds are supported: GPT-2 style byte-level BPE (``tokenizer.ggml.model ==
"gpt2"``, e.g. SmolLM2) and SentencePiece-style vocabularies (``"llama"``, e.g. Gemma 3).
Encoding follows llama.cpp's ``llama_tokenize``:

* Special tokens are split out of the text first (see :mod:`tokenizer_special`). With
  ``parse_special=True`` (the default, as chat templates emit ``<|im_start|>`` and friends)
  control tokens in the text become single tokens; with ``False`` they are tokenized as plain
  text. User-defined tokens (type 4) are *always* single tokens, as in llama.cpp.
* ``add_bos=None`` adds BOS exactly when ``tokenizer.ggml.add_bos_token`` says so, like
  llama.cpp's ``add_special=True``; ``True``/``False`` force it. EOS is never appended (llama.cpp
  would append it with ``add_special`` when ``tokenizer.ggml.add_eos_token`` is set).

Decoding concatenates each token's bytes as llama.cpp's ``llama_token_to_piece`` gives them
(control and unknown tokens are empty when ``skip_special``; user-defined tokens are their
text; ``<0xNN>`` tokens are the raw byte) and decodes UTF-8, replacing invalid bytes with
U+FFFD. No space clean-up is done, so ``decode(encode(text))`` gives ``text`` back, with two
exceptions that llama.cpp shares: in a SentencePiece vocabulary a literal ``▁`` in the text
comes back as a space, and a byte-level vocabulary that lacks a token for some byte (SmolLM2
has none for 0x04, 0x06, 0x13, 0x14, 0x16 and 0x1d) drops that byte.
"""

from __future__ import annotations

import codecs
import operator
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from flexserve.engine.tokenizer_bpe import ByteLevelBPE
from flexserve.engine.tokenizer_special import SpecialSplitter
from flexserve.engine.tokenizer_spm import SentencePieceBPE, byte_token_value
from flexserve.engine.tokenizer_vocab import TokenType, Vocab, vocab_from_metadata
from flexserve.errors import TokenizerError

MAX_TEXT_CHARS = 16 * 1024 * 1024
_HIDDEN = frozenset({TokenType.CONTROL, TokenType.UNKNOWN})
_EMPTY = frozenset({TokenType.UNUSED, TokenType.UNDEFINED})


class _Backend(Protocol):
    default_add_bos: bool

    def encode(self, text: str) -> list[int]: ...

    def normal_bytes(self, token_id: int) -> bytes: ...


class Tokenizer:
    """Encode text to token ids and back, as llama.cpp does for the same GGUF."""

    def __init__(self, vocab: Vocab) -> None:
        self._vocab = vocab
        self._backend: _Backend = (
            ByteLevelBPE(vocab) if vocab.model == "gpt2" else SentencePieceBPE(vocab)
        )
        self._add_bos = self._backend.default_add_bos if vocab.add_bos is None else vocab.add_bos
        if self._add_bos and vocab.bos_id is None:
            raise TokenizerError("BOS is to be added but tokenizer.ggml.bos_token_id is missing")
        self._splitter = SpecialSplitter(vocab)
        self._stop_ids = vocab.eog_ids()
        self._bytes_cache: dict[int, bytes] = {}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Tokenizer:
        """Build from a GGUF metadata mapping; raises TokenizerError if it is unusable."""
        return cls(vocab_from_metadata(metadata))

    # ----------------------------------------------------------------- properties
    @property
    def model(self) -> str:
        """``tokenizer.ggml.model``: ``"gpt2"`` or ``"llama"``."""
        return self._vocab.model

    @property
    def vocab_size(self) -> int:
        return self._vocab.size

    @property
    def bos_id(self) -> int | None:
        return self._vocab.bos_id

    @property
    def eos_id(self) -> int | None:
        return self._vocab.eos_id

    @property
    def add_bos(self) -> bool:
        """Whether ``encode(..., add_bos=None)`` adds BOS: ``tokenizer.ggml.add_bos_token``, or
        llama.cpp's default for the tokenizer kind when the GGUF does not say."""
        return self._add_bos

    @property
    def stop_token_ids(self) -> frozenset[int]:
        """Tokens that end generation: llama.cpp's end-of-generation set (EOS, EOT, ...)."""
        return self._stop_ids

    def token_text(self, token_id: int) -> str:
        """The token's vocabulary text, as stored (``Ġ``/``▁`` markers, ``<0x0A>``, ...)."""
        return self._vocab.tokens[self._index(token_id)]

    def token_type(self, token_id: int) -> TokenType:
        return self._vocab.types[self._index(token_id)]

    def is_special(self, token_id: int) -> bool:
        """True for control and unknown tokens (hidden by ``decode(skip_special=True)``)."""
        return self.token_type(token_id) in _HIDDEN

    # ------------------------------------------------------------------- encoding
    def encode(
        self, text: str, add_bos: bool | None = None, parse_special: bool = True
    ) -> list[int]:
        """Token ids for ``text``; see the module docstring for the exact rules."""
        _check_text(text)
        ids: list[int] = []
        if self._add_bos if add_bos is None else add_bos:
            if self._vocab.bos_id is None:
                raise TokenizerError("this vocabulary has no BOS token")
            ids.append(self._vocab.bos_id)
        prev_special = True
        for piece in self._splitter.split(text, parse_special):
            if isinstance(piece, int):
                ids.append(piece)
                prev_special = True
                continue
            if self._vocab.add_space_prefix and prev_special and self._vocab.model == "llama":
                piece = " " + piece
            ids.extend(self._backend.encode(piece))
            prev_special = False
        return ids

    def encode_prompt(self, prompt: str) -> list[int]:
        """Encode a rendered chat prompt: specials parsed, BOS added unless already there."""
        ids = self.encode(prompt, add_bos=False, parse_special=True)
        bos = self._vocab.bos_id
        if self._add_bos and bos is not None and ids[:1] != [bos]:
            ids.insert(0, bos)
        return ids

    # ------------------------------------------------------------------- decoding
    def token_bytes(self, token_id: int, skip_special: bool = True) -> bytes:
        """The bytes one token stands for (llama.cpp's ``llama_token_to_piece``)."""
        token_id = self._index(token_id)
        kind = self._vocab.types[token_id]
        if kind in _HIDDEN:
            return b"" if skip_special else self._vocab.tokens[token_id].encode("utf-8")
        cached = self._bytes_cache.get(token_id)
        if cached is None:
            cached = self._piece_bytes(token_id, kind)
            self._bytes_cache[token_id] = cached
        return cached

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of the token ids; invalid UTF-8 becomes U+FFFD."""
        raw = b"".join(self.token_bytes(i, skip_special) for i in ids)
        return raw.decode("utf-8", errors="replace")

    def stream_decoder(self, skip_special: bool = True) -> StreamDecoder:
        """A decoder for generated tokens that only ever emits whole characters."""
        return StreamDecoder(self, skip_special)

    # ------------------------------------------------------------------- helpers
    def _piece_bytes(self, token_id: int, kind: TokenType) -> bytes:
        text = self._vocab.tokens[token_id]
        if kind == TokenType.NORMAL:
            return self._backend.normal_bytes(token_id)
        if kind == TokenType.BYTE:
            value = byte_token_value(text)
            return text.encode("utf-8") if value is None else bytes((value,))
        if kind in _EMPTY:
            return b""
        return text.encode("utf-8")  # user-defined

    def _index(self, token_id: int) -> int:
        """``token_id`` as a plain int (numpy/torch ints accepted), checked against the vocab."""
        try:
            index = operator.index(token_id)
        except TypeError:
            index = -1
        if isinstance(token_id, bool) or not 0 <= index < self._vocab.size:
            raise TokenizerError(f"token id {token_id!r} is outside the vocabulary")
        return index

    def __repr__(self) -> str:
        return f"Tokenizer(model={self.model!r}, vocab_size={self.vocab_size})"


class StreamDecoder:
    """Turns generated token ids into text deltas, never splitting a UTF-8 character.

    Bytes of a character split over several tokens are held back until the character is
    complete; invalid sequences become U+FFFD. ``finish()`` flushes whatever is held back.
    The concatenated deltas equal ``tokenizer.decode(all_ids, skip_special)``.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip_special = skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now complete (possibly "")."""
        return self._utf8.decode(self._tokenizer.token_bytes(token_id, self._skip_special))

    def finish(self) -> str:
        """Flush held-back bytes (an incomplete character becomes U+FFFD) and reset."""
        tail = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return tail


def _check_text(text: str) -> None:
    if not isinstance(text, str):
        raise TokenizerError(f"text to encode must be str, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise TokenizerError(f"text of {len(text)} characters is longer than {MAX_TEXT_CHARS}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TokenizerError(f"text is not valid Unicode (lone surrogate?): {exc}") from None
