"""The engine benchmark's worker: each engine measured alone in its own process.

Peak memory is compared across engines, so the llama.cpp side must not load torch (about
200 MiB of the process would then be ours, not llama.cpp's).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_the_llamacpp_side_never_imports_torch() -> None:
    script = ("import sys\n"
              "from flexserve.bench import engine_worker\n"
              "ids = engine_worker._tokenize('smollm2-135m', 32)\n"
              "from flexserve.catalog import resolve\n"
              "resolve('smollm2-135m')\n"
              "assert len(ids) == 32, ids\n"
              "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_our_worker_reports_every_length_and_its_memory() -> None:
    command = [sys.executable, "-m", "flexserve.bench.engine_worker", "ours", "--model",
               "smollm2-135m", "--lengths", "8,16", "--decode-tokens", "2", "--repeats", "2"]
    payload = json.loads(subprocess.run(command, capture_output=True, text=True, check=True,
                                        timeout=300).stdout)
    assert payload["engine"] == "ours" and set(payload["per_length"]) == {"8", "16"}
    for row in payload["per_length"].values():
        assert len(row["ttft_s"]) == 2 and all(v > 0 for v in row["decode_tokens_per_s"])
    assert 100 * 2**20 < payload["peak_rss_bytes"] < 4 * 2**30
