"""The tokenizer on the bundled models, against llama.cpp (the reference for GGUF models).

Golden ids come from ``scripts/make_tokenizer_fixtures.py`` (llama-cpp-python); the live
tests compare against llama_cpp directly when it is importable and are skipped otherwise.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.tokenizer import Tokenizer
from flexserve.engine.tokenizer_bpe import byte_alphabet

FIXTURES = Path(__file__).parent / "fixtures"
DATASETS = Path("/work/shared/datasets")
CORPUS = json.loads((FIXTURES / "tokenizer_corpus.json").read_text("utf-8"))["texts"]
TEXTS: dict[str, str] = {item["id"]: item["text"] for item in CORPUS}


@dataclass(frozen=True)
class Model:
    name: str
    path: Path
    tokenizer: Tokenizer
    golden: dict[str, Any]
    lost_chars: frozenset[str]


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def model(request: pytest.FixtureRequest) -> Model:
    path: Path = request.getfixturevalue(f"{request.param}_path")
    with GGUFFile.open(path) as gguf:
        tokenizer = Tokenizer.from_metadata(gguf.metadata)
    golden = json.loads((FIXTURES / f"tokenizer_golden_{request.param}.json").read_text("utf-8"))
    assert golden["model_file"] == path.name
    return Model(request.param, path, tokenizer, golden, lost_ascii(tokenizer))


def lost_ascii(tok: Tokenizer) -> frozenset[str]:
    """ASCII characters a byte-level vocabulary has no token for."""
    if tok.model != "gpt2":
        return frozenset()
    vocab = {tok.token_text(i) for i in range(tok.vocab_size)}
    return frozenset(chr(b) for b, char in enumerate(byte_alphabet()[:128]) if char not in vocab)


def expected_round_trip(model: Model, text: str) -> str:
    tok = model.tokenizer
    if tok.model == "llama":
        # SentencePiece vocabularies spell spaces "▁", so a literal "▁" decodes as a space.
        return text.replace("▁", " ")
    # SmolLM2 has no token for a few ASCII control bytes (0x04, 0x1d, ...); like llama.cpp we
    # drop them.
    return "".join(c for c in text if c not in model.lost_chars)


def first_mismatches(pairs: list[tuple[str, Any, Any]], limit: int = 5) -> list[str]:
    bad = [f"{key}: ours={ours[:12]} llama.cpp={ref[:12]}" for key, ours, ref in pairs
           if ours != ref]
    return bad[:limit] + ([f"... {len(bad)} mismatches in all"] if bad else [])


# ------------------------------------------------------------------------------- golden
def test_corpus_is_large_and_mixed() -> None:
    sources = {item["id"].split(":")[0] for item in CORPUS}
    assert len(CORPUS) >= 500 and {"ad", "dd", "oa", "sharegpt", "edge"} <= sources


def test_encode_matches_llama_cpp_with_special_parsing(model: Model) -> None:
    tok = model.tokenizer
    pairs = [(c["id"], tok.encode(TEXTS[c["id"]], add_bos=False), c["ids"])
             for c in model.golden["cases"]]
    assert len(pairs) == len(CORPUS)
    assert first_mismatches(pairs) == []


def test_encode_matches_llama_cpp_without_special_parsing(model: Model) -> None:
    tok = model.tokenizer
    pairs = [
        (c["id"], tok.encode(TEXTS[c["id"]], add_bos=False, parse_special=False),
         c["ids"] if c["ids_plain"] is None else c["ids_plain"])
        for c in model.golden["cases"]
    ]
    assert first_mismatches(pairs) == []
    assert sum(c["ids_plain"] is not None for c in model.golden["cases"]) >= 5


def test_add_bos_and_parse_special_match_llama_cpp(model: Model) -> None:
    # llama.cpp's add_special=True adds BOS only if the model asks for it: our add_bos=None.
    tok = model.tokenizer
    pairs = [
        (repr(case), tok.encode(case["text"], add_bos=None if case["add_bos"] else False,
                                parse_special=case["special"]), case["ids"])
        for case in model.golden["bos_cases"]
    ]
    assert first_mismatches(pairs) == []


def test_decode_table_matches_llama_cpp_token_to_piece(model: Model) -> None:
    tok = model.tokenizer
    for mode, skip_special in (("special", False), ("plain", True)):
        digest = hashlib.sha256()
        for token_id in range(tok.vocab_size):
            raw = tok.token_bytes(token_id, skip_special)
            digest.update(len(raw).to_bytes(4, "little") + raw)
        assert digest.hexdigest() == model.golden["pieces_sha256"][mode], mode


def test_decode_round_trips(model: Model) -> None:
    tok = model.tokenizer
    for item in CORPUS:
        text = item["text"]
        plain = tok.encode(text, add_bos=False, parse_special=False)
        assert tok.decode(plain) == expected_round_trip(model, text), item["id"]
        parsed = tok.encode(text, add_bos=False)
        assert tok.decode(parsed, skip_special=False) == expected_round_trip(model, text)


def test_stream_decoder_matches_decode(model: Model) -> None:
    tok = model.tokenizer
    for item in CORPUS:
        ids = tok.encode(item["text"], add_bos=False)
        decoder = tok.stream_decoder()
        deltas = [decoder.push(i) for i in ids]
        assert "".join(deltas) + decoder.finish() == tok.decode(ids), item["id"]
        assert all("\ufffd" not in d for d in deltas), item["id"]


def test_vocab_facts_match_llama_cpp(model: Model) -> None:
    tok, golden = model.tokenizer, model.golden
    assert tok.vocab_size == golden["n_vocab"]
    assert (tok.bos_id, tok.eos_id) == (golden["bos_id"], golden["eos_id"])
    assert tok.stop_token_ids == frozenset(golden["eog_ids"])


def test_stop_tokens_cover_the_chat_end_markers(model: Model) -> None:
    tok = model.tokenizer
    texts = {tok.token_text(i) for i in tok.stop_token_ids}
    expected = {"smollm2": {"<|im_end|>", "<|endoftext|>"}, "gemma3": {"<eos>", "<end_of_turn>"}}
    assert expected[model.name] <= texts


def test_chat_prompt_encodes_specials_as_single_tokens(model: Model) -> None:
    tok = model.tokenizer
    if model.name == "smollm2":
        prompt, markers = "<|im_start|>user\nHi<|im_end|>\n", ["<|im_start|>", "<|im_end|>"]
    else:
        prompt, markers = "<bos><start_of_turn>user\nHi<end_of_turn>\n", ["<start_of_turn>"]
    ids = tok.encode_prompt(prompt)
    assert all(any(tok.token_text(i) == m for i in ids) for m in markers)
    assert ids == tok.encode(prompt, add_bos=False)  # no BOS added twice (Gemma) or at all
    if model.name == "gemma3":
        assert tok.encode_prompt(prompt.removeprefix("<bos>")) == ids


@pytest.mark.parametrize("pre", ["gpt-2", "llama-bpe", "qwen2"])
def test_other_bpe_pre_tokenizers_match_llama_cpp(pre: str, smollm2_path: Path) -> None:
    # SmolLM2's vocabulary under another tokenizer.ggml.pre, without add_bos_token.
    golden = json.loads((FIXTURES / f"tokenizer_golden_pre_{pre}.json").read_text("utf-8"))
    assert golden["base_model_file"] == smollm2_path.name
    with GGUFFile.open(smollm2_path) as gguf:
        metadata = dict(gguf.metadata)
    metadata["tokenizer.ggml.pre"] = pre
    del metadata["tokenizer.ggml.add_bos_token"]
    tok = Tokenizer.from_metadata(metadata)
    assert tok.encode("Hello", add_bos=None) == golden["default_bos_ids"]
    pairs = [(c["id"], tok.encode(TEXTS[c["id"]], add_bos=False), c["ids"])
             for c in golden["cases"]]
    assert len(pairs) >= 300
    assert first_mismatches(pairs) == []


# --------------------------------------------------------------------------------- live
@pytest.fixture(scope="module")
def llama(model: Model) -> Any:
    llama_cpp = pytest.importorskip("llama_cpp")
    return llama_cpp.Llama(model_path=str(model.path), vocab_only=True, verbose=False)


def live_texts() -> list[str]:
    """Prompts not in the fixture corpus plus seeded junk built to stress the pre-tokenizers."""
    rng = random.Random(7)
    texts: list[str] = []
    for path in sorted(DATASETS.glob("*.jsonl")):
        prompts = [json.loads(line)["prompt"] for line in path.read_text("utf-8").splitlines()]
        texts += rng.sample([p for p in prompts if len(p) <= 4000], 60)
    pieces = [*" \n\t\r\u00a0\u3000\x85\x1c", "  ", "\n\n", *"09١²½aZé日🎉'.<>|_-", "'s", "'S",
              "<|im_end|>", "<|im_start|>", "<end_of_turn>", "<bos>", "</s>", "<0x41>", "▁", "Ġ",
              "\u0301", "<table>", "<unused7>"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))) for _ in range(400)]
    return [t for t in texts if t.encode("utf-8", "surrogatepass") == t.encode("utf-8", "replace")]


def test_live_encode_matches_llama_cpp(model: Model, llama: Any) -> None:
    tok = model.tokenizer
    pairs = []
    for k, text in enumerate(live_texts()):
        raw = text.encode("utf-8")
        for special in (True, False):
            ours = tok.encode(text, add_bos=None if k % 2 else False, parse_special=special)
            ref = llama.tokenize(raw, add_bos=bool(k % 2), special=special)
            pairs.append((f"{k}/{special}: {text[:40]!r}", ours, ref))
    assert first_mismatches(pairs) == []


def test_live_golden_fixtures_are_current(model: Model, llama: Any) -> None:
    import llama_cpp

    if model.golden["llama_cpp_version"] != llama_cpp.__version__:
        pytest.skip("fixtures were made with another llama_cpp version")
    for case in model.golden["cases"][:200]:
        raw = TEXTS[case["id"]].encode("utf-8")
        assert llama.tokenize(raw, add_bos=False, special=True) == case["ids"], case["id"]


def test_live_decode_matches_llama_cpp(model: Model, llama: Any) -> None:
    import llama_cpp

    tok, vocab = model.tokenizer, llama._model.vocab
    buf = ctypes.create_string_buffer(1024)
    for token_id in random.Random(3).sample(range(tok.vocab_size), 3000):
        for special in (True, False):
            n = llama_cpp.llama_token_to_piece(vocab, token_id, buf, len(buf), 0, special)
            assert tok.token_bytes(token_id, skip_special=not special) == buf.raw[:n], token_id
