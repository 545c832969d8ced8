"""Load on a running ``flexserve serve``: N concurrent streaming clients, latency percentiles.

Each client is a thread that sends its requests one after another (streaming completions over
plain HTTP) and records, per request, the host time to the first text chunk (TTFT), the time to
the last byte (end-to-end), the completion tokens and the device TTFT the server reports in its
``flexserve`` extension. Throughput is completion tokens over the wall time of the whole run.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flexserve.errors import ConfigError

PERCENTILES = (50, 90, 99)
REQUEST_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class LoadConfig:
    url: str
    model: str
    clients: int
    requests_per_client: int = 2
    max_tokens: int = 32
    prompt: str = "1, 2, 3, 4, 5, 6, 7, 8,"  # greedy decoding counts on: no early stop
    api_key: str | None = None

    def __post_init__(self) -> None:
        if self.clients < 1 or self.requests_per_client < 1 or self.max_tokens < 1:
            raise ConfigError("clients, requests per client and max_tokens must be >= 1")


@dataclass(frozen=True)
class RequestSample:
    ok: bool
    ttft_s: float
    end_to_end_s: float
    completion_tokens: int
    device_ttft_s: float | None
    error: str | None = None


@dataclass
class LoadResult:
    config: LoadConfig
    wall_s: float
    samples: list[RequestSample] = field(default_factory=list)

    @property
    def ok(self) -> list[RequestSample]:
        return [s for s in self.samples if s.ok]

    @property
    def errors(self) -> int:
        return len(self.samples) - len(self.ok)

    @property
    def tokens_per_s(self) -> float:
        return sum(s.completion_tokens for s in self.ok) / self.wall_s if self.wall_s else 0.0

    @property
    def requests_per_s(self) -> float:
        return len(self.ok) / self.wall_s if self.wall_s else 0.0

    def percentiles(self, name: str) -> dict[int, float]:
        values = [getattr(s, name) for s in self.ok if getattr(s, name) is not None]
        if not values:
            return {p: float("nan") for p in PERCENTILES}
        return {p: float(np.percentile(values, p)) for p in PERCENTILES}

    def summary(self) -> dict[str, Any]:
        return {"clients": self.config.clients, "requests": len(self.samples),
                "errors": self.errors, "wall_s": self.wall_s,
                "tokens_per_s": self.tokens_per_s, "requests_per_s": self.requests_per_s,
                "ttft_s": self.percentiles("ttft_s"),
                "end_to_end_s": self.percentiles("end_to_end_s"),
                "device_ttft_s": self.percentiles("device_ttft_s")}


def run_load(config: LoadConfig) -> LoadResult:
    """Run ``config.clients`` clients at once; every request's outcome is in the result."""
    samples: list[RequestSample] = []
    lock = threading.Lock()
    barrier = threading.Barrier(config.clients)

    def client() -> None:
        barrier.wait()
        for _ in range(config.requests_per_client):
            sample = one_request(config)
            with lock:
                samples.append(sample)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(config.clients)]
    start_s = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(config, time.perf_counter() - start_s, samples)


def one_request(config: LoadConfig) -> RequestSample:
    body = {"model": config.model, "prompt": config.prompt, "max_tokens": config.max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    headers = {"Content-Type": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    request = urllib.request.Request(config.url.rstrip("/") + "/v1/completions",
                                     json.dumps(body).encode(), headers)
    start_s = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return _read_stream(response, start_s)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        elapsed_s = time.perf_counter() - start_s
        return RequestSample(False, elapsed_s, elapsed_s, 0, None, str(exc))


def _read_stream(response, start_s: float) -> RequestSample:
    first_s: float | None = None
    tokens = 0
    device_ttft_s: float | None = None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[len("data: "):])
        if "error" in chunk:
            elapsed_s = time.perf_counter() - start_s
            return RequestSample(False, elapsed_s, elapsed_s, 0, None, chunk["error"]["message"])
        if first_s is None and any(c.get("text") for c in chunk.get("choices", [])):
            first_s = time.perf_counter()
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        if "flexserve" in chunk:
            device_ttft_s = chunk["flexserve"].get("device", {}).get("ttft_s")
    end_s = time.perf_counter()
    return RequestSample(True, (first_s or end_s) - start_s, end_s - start_s, tokens,
                         device_ttft_s)


def format_table(results: list[LoadResult]) -> str:
    header = (f"{'clients':>7} {'reqs':>5} {'errs':>4} {'tok/s':>7} {'req/s':>6}  "
              f"{'TTFT p50/p90/p99 (s)':>22}  {'end-to-end p50/p90/p99 (s)':>27}  "
              f"{'device TTFT p50 (s)':>19}")
    lines = [header]
    for result in results:
        ttft = result.percentiles("ttft_s")
        e2e = result.percentiles("end_to_end_s")
        device = result.percentiles("device_ttft_s")
        lines.append(
            f"{result.config.clients:>7} {len(result.samples):>5} {result.errors:>4} "
            f"{result.tokens_per_s:>7.1f} {result.requests_per_s:>6.2f}  "
            f"{_triple(ttft):>22}  {_triple(e2e):>27}  {device[50]:>19.3f}")
    return "\n".join(lines)


def _triple(values: dict[int, float]) -> str:
    return "/".join(f"{values[p]:.2f}" for p in PERCENTILES)
