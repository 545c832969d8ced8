"""Tokenizer unit tests on small synthetic vocabularies (no model files needed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flexserve.engine.tokenizer import StreamDecoder, Tokenizer
from flexserve.engine.tokenizer_bpe import PRE_TOKENIZERS, byte_alphabet
from flexserve.engine.tokenizer_vocab import TokenType
from flexserve.errors import TokenizerError

N, C, U, B = TokenType.NORMAL, TokenType.CONTROL, TokenType.USER_DEFINED, TokenType.BYTE


def bpe_metadata(**overrides: Any) -> dict[str, Any]:
    """A byte-level BPE vocabulary: 3 control tokens, 1 user-defined, 256 bytes, a few merges."""
    specials = [("<|endoftext|>", C), ("<|im_start|>", C), ("<|im_end|>", C), ("<tool>", U)]
    merged = ["he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", "12", "Ġhello"]
    tokens = [t for t, _ in specials] + list(byte_alphabet()) + merged
    types = [int(k) for _, k in specials] + [int(N)] * (256 + len(merged))
    merges = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "Ġ hello"
    ]
    metadata = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.add_bos_token": False,
    }
    metadata.update(overrides)
    return metadata


def spm_metadata(**overrides: Any) -> dict[str, Any]:
    """A SentencePiece-style vocabulary with byte fallback and scored merges."""
    entries: list[tuple[str, float, TokenType]] = [
        ("<pad>", 0.0, C), ("<eos>", 0.0, C), ("<bos>", 0.0, C), ("<unk>", 0.0, TokenType.UNKNOWN),
        ("<end_of_turn>", 0.0, C), ("\n", 0.0, U), ("  ", 0.0, U),
    ]
    entries += [(f"<0x{b:02X}>", 0.0, B) for b in range(256)]
    normal = {"▁": -1, "a": -2, "b": -3, "c": -4, "é": -5, "bc": -6, "ab": -7, "▁a": -8,
              "▁ab": -9, "abc": -10}
    entries += [(text, float(score), N) for text, score in normal.items()]
    metadata = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [e[0] for e in entries],
        "tokenizer.ggml.scores": [e[1] for e in entries],
        "tokenizer.ggml.token_type": [int(e[2]) for e in entries],
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.ggml.add_space_prefix": False,
    }
    metadata.update(overrides)
    return metadata


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    return Tokenizer.from_metadata(bpe_metadata())


@pytest.fixture(scope="module")
def spm() -> Tokenizer:
    return Tokenizer.from_metadata(spm_metadata())


def texts(tok: Tokenizer, ids: list[int]) -> list[str]:
    return [tok.token_text(i) for i in ids]


# ------------------------------------------------------------------------ metadata errors
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tokenizer.ggml.model": "bert"}, "unsupported tokenizer model 'bert'"),
        ({"tokenizer.ggml.model": None}, "must be str"),
        ({"tokenizer.ggml.pre": "falcon"}, "unsupported BPE pre-tokenizer 'falcon'"),
        ({"tokenizer.ggml.tokens": []}, "no (or an empty) tokenizer.ggml.tokens"),
        ({"tokenizer.ggml.tokens": ["a", "b"]}, "token_type has 271 entries for 2 tokens"),
        ({"tokenizer.ggml.token_type": [1] * 3}, "token_type has 3 entries"),
        ({"tokenizer.ggml.token_type": [1] * 270 + [9]}, "unknown type 9"),
        ({"tokenizer.ggml.merges": ["h e", "bad"]}, "merges[1] is not two tokens"),
        ({"tokenizer.ggml.merges": ["h zz"]}, "not in the vocabulary"),
        ({"tokenizer.ggml.bos_token_id": 10**6}, "outside the vocabulary"),
        ({"tokenizer.ggml.bos_token_id": True}, "must be an integer"),
        ({"tokenizer.ggml.add_bos_token": "yes"}, "must be bool"),
    ],
)
def test_bad_bpe_metadata_raises_tokenizer_error(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(TokenizerError) as info:
        Tokenizer.from_metadata(bpe_metadata(**overrides))
    assert message in str(info.value)


def test_missing_model_key_and_merges_raise() -> None:
    metadata = bpe_metadata()
    del metadata["tokenizer.ggml.model"]
    with pytest.raises(TokenizerError, match=r"no tokenizer\.ggml\.model"):
        Tokenizer.from_metadata(metadata)
    metadata = bpe_metadata()
    del metadata["tokenizer.ggml.merges"]
    with pytest.raises(TokenizerError, match=r"needs tokenizer\.ggml\.merges"):
        Tokenizer.from_metadata(metadata)


def test_duplicate_tokens_and_missing_byte_tokens_raise() -> None:
    tokens = bpe_metadata()["tokenizer.ggml.tokens"]
    with pytest.raises(TokenizerError, match="duplicate"):
        Tokenizer.from_metadata(bpe_metadata(**{"tokenizer.ggml.tokens": [*tokens[:-1], "he"]}))
    meta = spm_metadata()
    meta["tokenizer.ggml.tokens"] = [t.replace("<0x41>", "<0xZZ>") for t in meta[
        "tokenizer.ggml.tokens"]]
    with pytest.raises(TokenizerError, match="byte tokens"):
        Tokenizer.from_metadata(meta)


def test_add_bos_without_bos_id_raises() -> None:
    meta = spm_metadata()
    del meta["tokenizer.ggml.bos_token_id"]
    with pytest.raises(TokenizerError, match="bos_token_id is missing"):
        Tokenizer.from_metadata(meta)


def test_known_pre_tokenizers_build() -> None:
    for pre in PRE_TOKENIZERS:
        tok = Tokenizer.from_metadata(bpe_metadata(**{"tokenizer.ggml.pre": pre}))
        assert tok.decode(tok.encode("hello world 12")) == "hello world 12"


# ------------------------------------------------------------------------------- BPE
def test_bpe_merges_and_smollm_digit_split(bpe: Tokenizer) -> None:
    assert texts(bpe, bpe.encode("hello world")) == ["hello", "Ġworld"]
    # smollm splits every digit on its own first, so "12" never merges and " 1" stays apart.
    assert texts(bpe, bpe.encode("a 12")) == ["a", "Ġ", "1", "2"]


def test_gpt2_pre_tokenizer_keeps_numbers_together() -> None:
    tok = Tokenizer.from_metadata(bpe_metadata(**{"tokenizer.ggml.pre": "gpt-2"}))
    assert texts(tok, tok.encode("a 12")) == ["a", "Ġ", "12"]


def test_bpe_whitespace_runs_follow_gpt2_regex(bpe: Tokenizer) -> None:
    # "\s+(?!\S)" leaves the last space to join the word after it.
    assert texts(bpe, bpe.encode("a   hello")) == ["a", "Ġ", "Ġ", "Ġhello"]
    assert bpe.decode(bpe.encode("a   hello")) == "a   hello"


def test_bpe_special_tokens_parsed_only_when_asked(bpe: Tokenizer) -> None:
    text = "<|im_start|>user<|im_end|>"
    assert bpe.encode(text)[0] == 1 and bpe.encode(text)[-1] == 2
    plain = bpe.encode(text, parse_special=False)
    assert 1 not in plain and 2 not in plain
    assert bpe.decode(plain) == text


def test_user_defined_tokens_are_always_single_tokens(bpe: Tokenizer) -> None:
    assert bpe.encode("a<tool>b", parse_special=False) == bpe.encode("a<tool>b") == [
        bpe.encode("a")[0], 3, bpe.encode("b")[0]]
    assert bpe.decode([3]) == "<tool>"  # user-defined tokens are never hidden


def test_bpe_add_bos_follows_metadata_unless_forced(bpe: Tokenizer) -> None:
    assert bpe.add_bos is False
    assert bpe.encode("hello") == bpe.encode("hello", add_bos=False)
    assert bpe.encode("hello", add_bos=True)[0] == 1
    assert bpe.encode("") == []


def test_decode_skips_control_tokens_unless_asked(bpe: Tokenizer) -> None:
    ids = bpe.encode("<|im_start|>hello<|im_end|>")
    assert bpe.decode(ids) == "hello"
    assert bpe.decode(ids, skip_special=False) == "<|im_start|>hello<|im_end|>"


def test_stop_tokens_include_eos_and_end_of_turn_markers(bpe: Tokenizer) -> None:
    # <|im_end|> is EOS here; <|endoftext|> is an end-of-generation text in llama.cpp.
    assert bpe.stop_token_ids == frozenset({0, 2})
    assert bpe.bos_id == 1 and bpe.eos_id == 2
    assert bpe.vocab_size == 4 + 256 + 11


def test_token_text_and_bad_ids(bpe: Tokenizer) -> None:
    assert bpe.token_text(1) == "<|im_start|>"
    assert bpe.is_special(1) and not bpe.is_special(3)
    assert bpe.token_text(np.int64(1)) == "<|im_start|>"  # numpy/torch ids are fine
    assert bpe.stream_decoder().push(np.int32(bpe.encode("hello")[0])) == "hello"
    for bad in (-1, bpe.vocab_size, "1", 1.0, True):
        with pytest.raises(TokenizerError, match="outside the vocabulary"):
            bpe.token_text(bad)  # type: ignore[arg-type]
    with pytest.raises(TokenizerError):
        bpe.decode([bpe.vocab_size])


def test_encode_rejects_non_text(bpe: Tokenizer) -> None:
    with pytest.raises(TokenizerError, match="must be str"):
        bpe.encode(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TokenizerError, match="lone surrogate"):
        bpe.encode("bad \ud800")


# ------------------------------------------------------------------------------- SPM
def test_spm_merges_highest_score_first(spm: Tokenizer) -> None:
    # "bc" (-6) beats "ab" (-7), so "abc" is reached as a+bc; "abc" itself then merges.
    assert texts(spm, spm.encode("abc", add_bos=False)) == ["abc"]
    assert texts(spm, spm.encode("bca", add_bos=False)) == ["bc", "a"]
    assert texts(spm, spm.encode(" ab", add_bos=False)) == ["▁ab"]


def test_spm_byte_fallback_and_decode(spm: Tokenizer) -> None:
    ids = spm.encode("日é", add_bos=False)
    assert texts(spm, ids) == ["<0xE6>", "<0x97>", "<0xA5>", "é"]
    assert spm.decode(ids) == "日é"


def test_spm_bos_and_no_space_prefix(spm: Tokenizer) -> None:
    assert spm.encode("a") == [2, spm.encode("a", add_bos=False)[0]]
    assert texts(spm, spm.encode("a", add_bos=False)) == ["a"]


def test_spm_space_prefix_after_specials_when_enabled() -> None:
    tok = Tokenizer.from_metadata(spm_metadata(**{"tokenizer.ggml.add_space_prefix": True}))
    ids = tok.encode("ab<end_of_turn>a", add_bos=False)
    assert texts(tok, ids) == ["▁ab", "<end_of_turn>", "▁a"]


def test_spm_user_defined_whitespace_tokens(spm: Tokenizer) -> None:
    ids = spm.encode("a\n  b", add_bos=False, parse_special=False)
    assert texts(spm, ids) == ["a", "\n", "  ", "b"]
    assert spm.decode(ids) == "a\n  b"


def test_encode_prompt_adds_bos_once(spm: Tokenizer) -> None:
    assert spm.encode_prompt("<bos>a")[:2] == [2, spm.encode("a", add_bos=False)[0]]
    assert spm.encode_prompt("a")[0] == 2
    assert spm.encode_prompt("a").count(2) == 1


# ------------------------------------------------------------------------- streaming
def test_stream_decoder_holds_split_characters(spm: Tokenizer) -> None:
    decoder = spm.stream_decoder()
    assert isinstance(decoder, StreamDecoder)
    deltas = [decoder.push(i) for i in spm.encode("a日b", add_bos=False)]
    assert deltas == ["a", "", "", "日", "b"]
    assert decoder.finish() == ""


def test_stream_decoder_flushes_incomplete_character_on_finish(spm: Tokenizer) -> None:
    decoder = spm.stream_decoder()
    first_two = spm.encode("日", add_bos=False)[:2]
    assert [decoder.push(i) for i in first_two] == ["", ""]
    assert decoder.finish() == "\ufffd"
    assert decoder.push(spm.encode("a", add_bos=False)[0]) == "a"  # usable again after finish


def test_stream_decoder_hides_control_tokens(spm: Tokenizer) -> None:
    ids = spm.encode("a<end_of_turn>", add_bos=True)
    assert "".join(spm.stream_decoder().push(i) for i in ids) == "a"
    shown = spm.stream_decoder(skip_special=False)
    assert "".join(shown.push(i) for i in ids) == "<bos>a<end_of_turn>"


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.integers(min_value=0, max_value=272), max_size=40))
def test_stream_deltas_concatenate_to_decode(ids: list[int]) -> None:
    tok = _SPM_FOR_PROPERTY
    decoder = tok.stream_decoder()
    streamed = "".join(decoder.push(i) for i in ids) + decoder.finish()
    assert streamed == tok.decode(ids)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet="abcé日 \n<>/e_ofturn", max_size=40))
def test_spm_round_trip(text: str) -> None:
    tok = _SPM_FOR_PROPERTY
    assert tok.decode(tok.encode(text, add_bos=False, parse_special=False)) == text
    assert tok.decode(tok.encode(text), skip_special=False) == "<bos>" + text


_SPM_FOR_PROPERTY = Tokenizer.from_metadata(spm_metadata())
