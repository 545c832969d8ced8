#!/usr/bin/env python3
"""Write llama.cpp's tokenization of a fixed corpus as golden data for the tokenizer tests.

Needs llama-cpp-python (``pip install -e ".[llamacpp]"``); the tests themselves do not.

    .venv/bin/python scripts/make_tokenizer_fixtures.py

Outputs, in ``tests/engine/fixtures/``:

* ``tokenizer_corpus.json``: the texts with their ids. Dataset prompts are drawn
  deterministically (``random.Random(SEED)``) from ``/work/shared/datasets/*.jsonl`` (prompts of
  at most ``MAX_PROMPT_CHARS`` characters), followed by hand-written edge cases.
* ``tokenizer_golden_<model>.json``: for every text, llama.cpp's ids with special tokens
  parsed (``special=True``) and, where different, without (``special=False``); both without
  BOS. Also a few ``add_bos=True`` cases, the end-of-generation ids, and a SHA-256 over all
  token pieces (``llama_token_to_piece`` with and without ``special``) so the decode table can
  be checked without storing it.
* ``tokenizer_golden_pre_<pre>.json``: SmolLM2's vocabulary and merges written to a
  vocabulary-only GGUF with another ``tokenizer.ggml.pre`` (and no ``add_bos_token`` key), so
  the other pre-tokenizers and their BOS default are checked too, on a subset of the texts.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import random
import sys
import tempfile
from pathlib import Path

import gguf
import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from flexserve.catalog.bundled import GEMMA3_270M, SMOLLM2_135M  # noqa: E402
from flexserve.engine.gguf_file import GGUFFile  # noqa: E402

DATASETS = Path("/work/shared/datasets")
OUT = ROOT / "tests" / "engine" / "fixtures"
SEED = 20260
PER_DATASET = 150
MAX_PROMPT_CHARS = 1500
BOS_CASES = ("", "Hello", " Hello", "<bos>Hello", "<|im_start|>user\nHi<|im_end|>\n", "\n\n")
MODELS = {"smollm2": SMOLLM2_135M, "gemma3": GEMMA3_270M}
PRE_VARIANTS = ("gpt-2", "llama-bpe", "qwen2")
PRE_VARIANT_PER_DATASET = 50

# Hand-written edge cases, appended to the dataset prompts.
WHITESPACE = [
    "", " ", "  ", "   ", "\n", "\n\n", "\n\n\n", "\t", "\t\t", " \t \n ", "\r\n", "a\r\nb",
    "a  b", "a   b", "a    b", " " * 40, "x" + "\n" * 35 + "y", "hi   ", "   hi", " hi", "\nhi",
    "line1\n  indented\n\tTabbed\n", "a\u00a0b", "\u3000x\u3000", "a\u2028b\u2029c",
    "zero\u200bwidth", "\ufeffbom", "a\x00b", "sep\x1c\x1d\x1e\x1fend", "v\x0bf\x0c",
    "nel\x85x", "\u2003em\u2009thin", " \n \n ", "   \n   \n",
]
DIGITS = [
    "123", " 123", "  123", "a 1", "a  1 23 456", "3.14159", " 3.14", "1,000,000",
    "year 2024 and 12345678901234567890", "a1b2c3", "x²+y²=z²", "½ ¼ ¾", "Ⅻ and ⅻ",
    "١٢٣ ٤٥٦", "१२३", "１２３ full width", "0x1F 0b1010 1e-9", "-42 +7 -0.5",
    "tel: +1 (555) 010-9999", "10:30 PM", "$5.99 €3,50 £7", "v1.2.3-rc4",
]
UNICODE = [
    "héllo wörld", "naïve café résumé", "e\u0301 vs é", "Ελληνικά κείμενα", "Привет, мир!",
    "日本語のテキストです。", "中文分词测试，句号。", "한국어 문장입니다", "עברית שלום",
    "العربية مرحبا", "हिन्दी पाठ", "ภาษาไทย", "Tiếng Việt có dấu", "ǅemal Ǉ", "ß ẞ ﬁ ﬀ",
    "🎉🎉🎉", "🤖 robot", "👍🏽 ok", "👨‍👩‍👧‍👦 family", "🇫🇷🇩🇪 flags", "😀😃😄😁",
    "mixed 日本 and English 🌍!", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math", "☃ ★ ♥ ✓ ✗", "emoji🎉glued", "Ω≈ç√∫",
]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < 10; ++i) {\n\tprintf(\"%d\\n\", i);\n}",
    'std::vector<int> v{1, 2, 3};',
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
    "<table><tr><td>1</td></tr></table>",
    "<s>strike</s> <b>bold</b> <i>it</i> <code>x</code>",
    "if (a<b && c>d) { return; }",
    "## Title\n\n- item one\n- item two\n\n```python\nprint('hi')\n```",
    "https://example.com/path?q=1&r=two#frag",
    "SELECT * FROM users WHERE id = 42;",
    "regex: ^[a-z]+\\d{2,3}$",
    "    four spaces\n        eight spaces\n",
]
ENGLISH = [
    "Hello world", "Hello, world! How are you?", "don't can't I'll we're they've she'd it's",
    "DON'T SHOUT IT'S LOUD", "don’t curly", "'quoted' \"double\"", "aaaa" * 25,
    "ababababab", "..........", "!!!???", "——— dashes –", "e.g. i.e. etc.",
]
SPECIAL = [
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text", "<eos>", "<|endoftext|>", "<pad>", "<mask>", "<unk>", "[multimodal]",
    "<unused42>", "</s>", "text<|im_end|>more", "<|im_start|><|im_start|>", "<|im_start",
    "<start_of_turn", "<<|im_end|>>", "<0x41>", "<0x0A>", "a</s>b", "x<end_of_turn>\n\ny",
    " <|im_end|> ", "<fim_prefix>a<fim_suffix>b<fim_middle>", "<start_of_image>",
]
EDGE_CASES: list[str] = WHITESPACE + DIGITS + UNICODE + CODE + ENGLISH + SPECIAL


def draw_corpus() -> list[dict[str, str]]:
    corpus: list[dict[str, str]] = []
    for path in sorted(DATASETS.glob("*.jsonl")):
        records = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        usable = [r for r in records if len(r["prompt"]) <= MAX_PROMPT_CHARS and _utf8(r)]
        rng = random.Random(f"{SEED}:{path.name}")
        for record in rng.sample(usable, PER_DATASET):
            corpus.append({"id": f"{path.stem}:{record['id']}", "text": record["prompt"]})
    corpus.extend({"id": f"edge:{i}", "text": text} for i, text in enumerate(EDGE_CASES))
    return corpus


def _utf8(record: dict[str, str]) -> bool:
    try:
        record["prompt"].encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def piece(vocab: llama_cpp.llama_vocab_p, token: int, special: bool) -> bytes:
    size = 256
    while True:
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_token_to_piece(vocab, token, buf, size, 0, special)
        if n >= 0:
            return buf.raw[:n]
        size = -n


def pieces_digest(model: llama_cpp.Llama, special: bool) -> str:
    vocab = model._model.vocab
    digest = hashlib.sha256()
    for token in range(model.n_vocab()):
        raw = piece(vocab, token, special)
        digest.update(len(raw).to_bytes(4, "little") + raw)
    return digest.hexdigest()


def golden(name: str, corpus: list[dict[str, str]]) -> dict[str, object]:
    path = MODELS[name].path()
    model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = model._model.vocab
    cases = []
    for item in corpus:
        raw = item["text"].encode("utf-8")
        with_special = model.tokenize(raw, add_bos=False, special=True)
        plain = model.tokenize(raw, add_bos=False, special=False)
        cases.append({
            "id": item["id"],
            "ids": with_special,
            "ids_plain": None if plain == with_special else plain,
        })
    bos_cases = [
        {"text": text, "special": special, "add_bos": add_bos,
         "ids": model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)}
        for text in BOS_CASES for special in (True, False) for add_bos in (True, False)
    ]
    return {
        "model_file": path.name,
        "llama_cpp_version": llama_cpp.__version__,
        "n_vocab": model.n_vocab(),
        "bos_id": model.token_bos(),
        "eos_id": model.token_eos(),
        "eog_ids": [t for t in range(model.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)],
        "pieces_sha256": {"special": pieces_digest(model, True),
                          "plain": pieces_digest(model, False)},
        "bos_cases": bos_cases,
        "cases": cases,
    }


def write_vocab_gguf(path: Path, metadata: dict[str, object], pre: str) -> None:
    """A vocabulary-only GGUF: SmolLM2's tokens and merges under another pre-tokenizer."""
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(2048)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_feed_forward_length(128)
    writer.add_head_count(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(metadata["tokenizer.ggml.tokens"])
    writer.add_token_types(metadata["tokenizer.ggml.token_type"])
    writer.add_token_merges(metadata["tokenizer.ggml.merges"])
    writer.add_bos_token_id(metadata["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(metadata["tokenizer.ggml.eos_token_id"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def pre_variant_subset(corpus: list[dict[str, str]]) -> list[dict[str, str]]:
    taken: dict[str, int] = {}
    subset = []
    for item in corpus:
        source = item["id"].split(":")[0]
        taken[source] = taken.get(source, 0) + 1
        if source == "edge" or taken[source] <= PRE_VARIANT_PER_DATASET:
            subset.append(item)
    return subset


def pre_variant_golden(pre: str, corpus: list[dict[str, str]], workdir: Path) -> dict:
    with GGUFFile.open(SMOLLM2_135M.path()) as source:
        metadata = dict(source.metadata)
    path = workdir / f"smollm2-vocab-{pre}.gguf"
    write_vocab_gguf(path, metadata, pre)
    model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    cases = [
        {"id": item["id"],
         "ids": model.tokenize(item["text"].encode("utf-8"), add_bos=False, special=True)}
        for item in pre_variant_subset(corpus)
    ]
    return {
        "base_model_file": SMOLLM2_135M.path().name,
        "pre": pre,
        "llama_cpp_version": llama_cpp.__version__,
        "default_bos_ids": model.tokenize(b"Hello", add_bos=True, special=True),
        "cases": cases,
    }


def write_json(path: Path, data: object) -> None:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), indent=None)
    path.write_text(text + "\n", "utf-8")
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    corpus = draw_corpus()
    write_json(OUT / "tokenizer_corpus.json", {"seed": SEED, "texts": corpus})
    for name in MODELS:
        write_json(OUT / f"tokenizer_golden_{name}.json", golden(name, corpus))
    with tempfile.TemporaryDirectory() as workdir:
        for pre in PRE_VARIANTS:
            data = pre_variant_golden(pre, corpus, Path(workdir))
            write_json(OUT / f"tokenizer_golden_pre_{pre}.json", data)


if __name__ == "__main__":
    main()
