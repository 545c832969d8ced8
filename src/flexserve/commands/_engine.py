"""Loading a model with visible progress, and streaming a reply to the terminal."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

from flexserve.catalog import resolve
from flexserve.errors import ModelError
from flexserve.ui.progress import ProgressBar


def load_for_generation(name_or_path: str):  # -> LoadedModel
    """Resolve a catalog name or path and load its weights, with a progress bar on a TTY."""
    from flexserve.engine.loader import load_model

    entry = resolve(name_or_path)
    if entry.imported is not None:
        raise ModelError(
            f"{entry.name} is an imported model: its weights exist only sealed for the device; "
            f"run it there with `flexserve run --model {entry.name}` or `flexserve serve`"
        )
    if entry.path is None:
        raise ModelError(
            f"{entry.name} is a shape-only model (no weights); it can be timed with "
            f"`flexserve run --model {entry.name} --prompt-tokens N` once that exists, "
            f"not generated from"
        )
    with ProgressBar(f"loading {entry.name}", entry.n_layers + 2) as bar:
        return load_model(entry.path, progress=bar.update)


@dataclass
class ReplyStats:
    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    decode_s: float
    finish_reason: str

    @property
    def decode_tokens_per_s(self) -> float:
        steps = self.completion_tokens - 1
        return steps / self.decode_s if steps > 0 and self.decode_s > 0 else 0.0

    def summary(self) -> str:
        return (
            f"[{self.prompt_tokens} prompt tokens, {self.completion_tokens} generated, "
            f"finish: {self.finish_reason}; host TTFT {self.ttft_s * 1000:.0f} ms, "
            f"decode {self.decode_tokens_per_s:.1f} tokens/s]"
        )


def stream_reply(loaded, prompt_ids: list[int], params, out: TextIO | None = None) -> ReplyStats:
    """Generate from ``prompt_ids``, writing text as it comes; return host-side timings."""
    from flexserve.engine.generate import Generator

    out = out if out is not None else sys.stdout
    generator = Generator(loaded.transformer, loaded.tokenizer)
    start_s = time.perf_counter()
    first_s: float | None = None
    completion_tokens = 0
    finish_reason = "length"
    for event in generator.stream(prompt_ids, params):
        if event.token_id is not None:
            completion_tokens += 1
            if first_s is None:
                first_s = time.perf_counter()
        if event.text:
            out.write(event.text)
            out.flush()
        if event.finish_reason is not None:
            finish_reason = event.finish_reason
    end_s = time.perf_counter()
    first_s = first_s if first_s is not None else end_s
    return ReplyStats(len(prompt_ids), completion_tokens, first_s - start_s,
                      end_s - first_s, finish_reason)
