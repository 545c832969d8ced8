"""GPT-2 style byte-level BPE (``tokenizer.ggml.model == "gpt2"``) on the ``tokenizers`` library.

Text is split by the pre-tokenizer regexes llama.cpp uses for ``tokenizer.ggml.pre``, applied
one after the other (each regex splits the pieces the previous one produced, keeping the
unmatched stretches as pieces too); then every piece's UTF-8 bytes are mapped to the GPT-2
byte alphabet and merged by rank. Only the pre-tokenizers listed in ``PRE_TOKENIZERS`` are
accepted; anything else raises :class:`TokenizerError` rather than tokenizing differently from
llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from tokenizers import Regex, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from flexserve.engine.tokenizer_vocab import Vocab
from flexserve.errors import TokenizerError

_CONTRACTIONS_CI = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (
    _CONTRACTIONS_CI
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    _CONTRACTIONS_CI
    + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class PreTokenizer:
    """What llama.cpp does for one ``tokenizer.ggml.pre`` value.

    ``regexes`` are applied in order; with ``ignore_merges`` a piece that is already a whole
    vocabulary token is emitted as is; ``add_bos`` is the default when the GGUF has no
    ``tokenizer.ggml.add_bos_token``.
    """

    regexes: tuple[str, ...]
    ignore_merges: bool = False
    add_bos: bool = False


_LLAMA3 = PreTokenizer((LLAMA3_REGEX,), ignore_merges=True, add_bos=True)
# All four kinds are checked against llama.cpp by the tests (SmolLM2's vocabulary with each
# ``pre`` value swapped in; see scripts/make_tokenizer_fixtures.py).
PRE_TOKENIZERS: dict[str, PreTokenizer] = {
    "gpt-2": PreTokenizer((GPT2_REGEX,)),
    "smollm": PreTokenizer((r"\p{N}", GPT2_REGEX)),
    "llama-bpe": _LLAMA3,
    "llama3": _LLAMA3,
    "llama-v3": _LLAMA3,
    "qwen2": PreTokenizer((QWEN2_REGEX,)),
}


@lru_cache(maxsize=1)
def byte_alphabet() -> tuple[str, ...]:
    """The GPT-2 byte-to-character table: printable bytes map to themselves, others to 256+."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return tuple(table[b] for b in range(256))


@lru_cache(maxsize=1)
def _char_to_byte() -> dict[str, int]:
    return {char: b for b, char in enumerate(byte_alphabet())}


class ByteLevelBPE:
    """Encode raw text (no special tokens) and give each normal token's bytes."""

    def __init__(self, vocab: Vocab) -> None:
        pre = PRE_TOKENIZERS.get(vocab.pre)
        if pre is None:
            known = ", ".join(sorted(PRE_TOKENIZERS))
            raise TokenizerError(f"unsupported BPE pre-tokenizer {vocab.pre!r}; known: {known}")
        self._vocab = vocab
        self.default_add_bos = pre.add_bos
        self._hf = _build(vocab, pre)

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def normal_bytes(self, token_id: int) -> bytes:
        """Bytes of a normal token: its characters mapped back through the byte alphabet."""
        table = _char_to_byte()
        out = bytearray()
        for char in self._vocab.tokens[token_id]:
            b = table.get(char)
            out += char.encode("utf-8") if b is None else bytes((b,))
        return bytes(out)


def _build(vocab: Vocab, pre: PreTokenizer) -> HFTokenizer:
    ids = {text: i for i, text in enumerate(vocab.tokens)}
    for left, right in vocab.merges:
        if left not in ids or right not in ids or left + right not in ids:
            raise TokenizerError(f"BPE merge {left!r} {right!r} uses tokens not in the vocabulary")
    bpe = models.BPE(
        vocab=ids, merges=list(vocab.merges), fuse_unk=False, ignore_merges=pre.ignore_merges
    )
    tokenizer = HFTokenizer(bpe)
    splits = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in pre.regexes]
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([*splits, byte_level])
    return tokenizer
