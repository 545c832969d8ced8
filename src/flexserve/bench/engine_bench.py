"""Host engine speed: prefill and decode tokens/s and TTFT, ours beside llama.cpp's.

Each engine runs in its own subprocess (``python -m flexserve.bench.engine_worker``) so that
its peak memory (``ru_maxrss``) and thread settings are its own. Both engines get the same
token ids, so they do the same work. Figures are medians over repeats; the spread is the
min-max range. Shared machines are noisy: compare ratios from one run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

from flexserve.errors import FlexServeError

PROMPT_LENGTHS = (32, 128, 512)


@dataclass(frozen=True)
class EngineBenchConfig:
    model: str
    prompt_lengths: tuple[int, ...] = PROMPT_LENGTHS
    decode_tokens: int = 64
    repeats: int = 3
    threads: int = 2


@dataclass
class Samples:
    """Repeated measurements of one figure."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self) -> tuple[float, float]:
        return (min(self.values), max(self.values)) if self.values else (float("nan"),) * 2


@dataclass
class LengthResult:
    prompt_tokens: int
    ttft_s: Samples
    prefill_tokens_per_s: Samples
    decode_tokens_per_s: Samples


@dataclass
class EngineResult:
    engine: str
    per_length: dict[int, LengthResult]
    peak_rss_bytes: int
    load_s: float


def _parse(payload: dict) -> EngineResult:
    per_length = {
        int(n): LengthResult(
            int(n),
            Samples(row["ttft_s"]),
            Samples(row["prefill_tokens_per_s"]),
            Samples(row["decode_tokens_per_s"]),
        )
        for n, row in payload["per_length"].items()
    }
    return EngineResult(payload["engine"], per_length, payload["peak_rss_bytes"],
                        payload["load_s"])


def run_engine(engine: str, config: EngineBenchConfig) -> EngineResult:
    """Measure one engine in a subprocess and return its figures."""
    command = [
        sys.executable, "-m", "flexserve.bench.engine_worker", engine,
        "--model", config.model,
        "--lengths", ",".join(str(n) for n in config.prompt_lengths),
        "--decode-tokens", str(config.decode_tokens),
        "--repeats", str(config.repeats),
        "--threads", str(config.threads),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise FlexServeError(f"{engine} benchmark worker failed: {detail[0]}")
    return _parse(json.loads(done.stdout))


def llamacpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None
