"""Benchmark prompts of an exact token length, drawn from the shared prompt datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

from flexserve.errors import ConfigError

# ../shared/datasets beside the repository (see its README for where each file came from);
# FLEXSERVE_DATASETS points elsewhere.
DATASETS_DIR = Path(
    os.environ.get("FLEXSERVE_DATASETS")
    or Path(__file__).resolve().parents[3].parent / "shared" / "datasets"
)
DATASET_FILES = {"ad": "ad.jsonl", "dd": "dd.jsonl", "oa": "oa.jsonl", "sharegpt": "sharegpt.jsonl"}


def dataset_path(name: str, root: Path = DATASETS_DIR) -> Path:
    if name not in DATASET_FILES:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASET_FILES)}")
    path = root / DATASET_FILES[name]
    if not path.is_file():
        raise ConfigError(f"dataset file {path} is missing (expected ../shared/datasets)")
    return path


def load_prompts(name: str, limit: int | None = None, root: Path = DATASETS_DIR) -> list[str]:
    """Prompt texts of a dataset, in file order."""
    prompts: list[str] = []
    with dataset_path(name, root).open(encoding="utf-8") as lines:
        for line in lines:
            prompts.append(json.loads(line)["prompt"])
            if limit is not None and len(prompts) >= limit:
                break
    return prompts


def prompt_of_length(tokenizer, n_tokens: int, dataset: str = "sharegpt") -> list[int]:
    """Exactly ``n_tokens`` ids: BOS (if the model uses one) then dataset text, truncated."""
    ids: list[int] = tokenizer.encode("", add_bos=None)
    for text in load_prompts(dataset):
        ids.extend(tokenizer.encode(text + "\n\n", add_bos=False))
        if len(ids) >= n_tokens:
            return ids[:n_tokens]
    raise ConfigError(f"dataset {dataset!r} has fewer than {n_tokens} tokens")
