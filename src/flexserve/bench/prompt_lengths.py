"""Token lengths of the four prompt sets, measured with a real tokenizer.

The paper's models (Qwen3, Llama 3.x) have no weights here, so their tokenizers are not
available either. The bundled SmolLM2-135M tokenizer (a 49,152-entry byte-level BPE) stands in
as a **proxy**. Larger vocabularies split text less: over all prompts the bundled Gemma 3
tokenizer (262k entries) gives 2-5% fewer tokens on the mean, medians within one token
(measured; see ``docs/workflows.md``), so for Llama 3 (128k) and Qwen3 (152k) expect the proxy
to read a few percent high. A length is the prompt text alone, encoded as plain text: no BOS,
no chat template, no special tokens.

The ``sharegpt`` set is ShareGPT, standing in for the paper's UltraChat (which could not be
obtained; see ``../shared/datasets/README.md``), and is labelled so.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from flexserve.bench.prompts import DATASET_FILES, DATASETS_DIR, load_prompts
from flexserve.errors import ConfigError

PROXY_TOKENIZER_MODEL = "smollm2-135m"
# Every prompt of every set is at most 5,000; 1,000 per set tokenizes in well under a second.
DEFAULT_LIMIT = 1000
LABELS = {
    "ad": "Alpaca (AD)",
    "dd": "Dolly (DD)",
    "oa": "OpenAssistant (OA)",
    "sharegpt": "ShareGPT (stand-in for UltraChat)",
}
assert set(LABELS) == set(DATASET_FILES)


class TextEncoder(Protocol):
    def encode(self, text: str, add_bos: bool | None = None) -> list[int]: ...


@dataclass(frozen=True)
class LengthSummary:
    """Summary statistics of prompt lengths, in tokens. p90 interpolates linearly (numpy)."""

    count: int
    mean_tokens: float
    median_tokens: float
    p90_tokens: float
    max_tokens: int


@dataclass(frozen=True)
class PromptSet:
    """The token lengths of a prompt set's first prompts, in file order."""

    name: str
    label: str
    lengths: tuple[int, ...]

    def summary(self) -> LengthSummary:
        return summarize(self.lengths)


def summarize(lengths_tokens: tuple[int, ...] | list[int]) -> LengthSummary:
    if not lengths_tokens:
        raise ConfigError("no prompt lengths to summarize")
    values = np.asarray(lengths_tokens, dtype=np.int64)
    return LengthSummary(
        count=int(values.size),
        mean_tokens=float(values.mean()),
        median_tokens=float(np.median(values)),
        p90_tokens=float(np.percentile(values, 90)),
        max_tokens=int(values.max()),
    )


@functools.cache
def proxy_tokenizer() -> TextEncoder:
    """The bundled SmolLM2 tokenizer (loaded once), standing in for the paper's tokenizers."""
    from flexserve.catalog import resolve
    from flexserve.engine.gguf_file import GGUFFile
    from flexserve.engine.tokenizer import Tokenizer

    path = resolve(PROXY_TOKENIZER_MODEL).path
    assert path is not None
    return Tokenizer.from_metadata(GGUFFile.open(path).metadata)


def prompt_set(name: str, limit: int | None = DEFAULT_LIMIT,
               tokenizer: TextEncoder | None = None, root: Path = DATASETS_DIR) -> PromptSet:
    """Token lengths of the first ``limit`` prompts (all with None) of dataset ``name``."""
    if name not in LABELS:
        raise ConfigError(f"unknown prompt set {name!r}; known: {', '.join(LABELS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be an integer >= 1 or None, got {limit!r}")
    encoder = tokenizer or proxy_tokenizer()
    texts = load_prompts(name, limit=limit, root=root)
    lengths = tuple(len(encoder.encode(text, add_bos=False)) for text in texts)
    return PromptSet(name, LABELS[name], lengths)


def all_prompt_sets(limit: int | None = DEFAULT_LIMIT) -> list[PromptSet]:
    """Every prompt set, in the order of :data:`LABELS`."""
    return [prompt_set(name, limit) for name in LABELS]
