"""Prompt-set token lengths: file order, limits, labels, summary statistics, the real proxy."""

from __future__ import annotations

import json

import pytest

from flexserve.bench.prompt_lengths import (
    LABELS,
    LengthSummary,
    all_prompt_sets,
    prompt_set,
    proxy_tokenizer,
    summarize,
)
from flexserve.bench.prompts import DATASET_FILES, load_prompts
from flexserve.errors import ConfigError


class WordEncoder:
    """One token per whitespace-separated word; records the add_bos it was given."""

    def __init__(self) -> None:
        self.add_bos_seen: set[bool | None] = set()

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        self.add_bos_seen.add(add_bos)
        return list(range(len(text.split())))


@pytest.fixture
def datasets(tmp_path):
    prompts = ["one", "one two three", "one two", "a b c d e f g"]
    for name in DATASET_FILES.values():
        rows = [json.dumps({"id": str(i), "prompt": p}) for i, p in enumerate(prompts)]
        (tmp_path / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path


def test_lengths_in_file_order_with_limit(datasets):
    encoder = WordEncoder()
    assert prompt_set("ad", 3, encoder, datasets).lengths == (1, 3, 2)
    assert prompt_set("ad", None, encoder, datasets).lengths == (1, 3, 2, 7)
    assert prompt_set("ad", 100, encoder, datasets).lengths == (1, 3, 2, 7)
    assert encoder.add_bos_seen == {False}


def test_labels(datasets):
    encoder = WordEncoder()
    assert prompt_set("sharegpt", 1, encoder, datasets).label == (
        "ShareGPT (stand-in for UltraChat)")
    assert set(LABELS) == {"ad", "dd", "oa", "sharegpt"}
    assert prompt_set("oa", 1, encoder, datasets).name == "oa"


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "10"])
def test_bad_limit(limit, datasets):
    with pytest.raises(ConfigError, match="limit must be"):
        prompt_set("ad", limit, WordEncoder(), datasets)


def test_unknown_set(datasets):
    with pytest.raises(ConfigError, match="unknown prompt set 'uc'"):
        prompt_set("uc", 1, WordEncoder(), datasets)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="missing"):
        prompt_set("ad", 1, WordEncoder(), tmp_path)


def test_summary_statistics():
    summary = summarize([1, 2, 3, 4, 100])
    assert summary.p90_tokens == pytest.approx(61.6)  # 4 + 0.6 * (100 - 4)
    assert summary == LengthSummary(5, 22.0, 3.0, summary.p90_tokens, 100)
    assert summarize((7,)) == LengthSummary(1, 7.0, 7.0, 7.0, 7)
    with pytest.raises(ConfigError, match="no prompt lengths"):
        summarize(())


def test_prompt_set_summary(datasets):
    summary = prompt_set("dd", None, WordEncoder(), datasets).summary()
    assert (summary.count, summary.mean_tokens, summary.median_tokens) == (4, 3.25, 2.5)
    assert summary.max_tokens == 7


def test_real_proxy_tokenizer_on_shared_datasets(smollm2_path, shared_datasets):
    sets = all_prompt_sets(limit=20)
    assert [s.name for s in sets] == list(LABELS)
    tokenizer = proxy_tokenizer()
    for s in sets:
        texts = load_prompts(s.name, limit=20)
        assert len(s.lengths) == 20
        assert s.lengths == tuple(len(tokenizer.encode(t, add_bos=False)) for t in texts)
        # BPE never yields more tokens than UTF-8 bytes, and every prompt is non-empty.
        assert all(1 <= n <= len(t.encode()) for n, t in zip(s.lengths, texts, strict=True))


def test_known_first_prompt_length(smollm2_path, shared_datasets):
    # The first Alpaca prompt in ad.jsonl (143 characters, 27 words) is 38 SmolLM2 tokens;
    # pinned so a change of tokenizer or of prompt order shows up here.
    first = load_prompts("ad", limit=1)[0]
    assert first.startswith("You are given two survey questions")
    assert prompt_set("ad", 1).lengths == (38,)
