"""Figure 8 workloads: deterministic sequences, the cache only removes work, CLI."""

from __future__ import annotations

import pytest

from flexserve.bench import cache_ttft
from flexserve.cli import main
from flexserve.soc.constants import GIB
from flexserve.systems.config import FLEXSERVE
from flexserve.timing.profile import load_profile
from flexserve.workflow.builtin import TEMPLATE_TOKENS

PAIR = ("qwen3-0.6b", "qwen3-1.7b")
LENGTHS = (12, 40, 5000, 7, 90)


@pytest.fixture(scope="module")
def profile():
    return load_profile("rk3588")


def test_workloads_are_seeded_and_clip_long_prompts() -> None:
    a = cache_ttft.make_workload(PAIR, "oa", LENGTHS, 10, seed=3)
    assert a == cache_ttft.make_workload(PAIR, "oa", LENGTHS, 10, seed=3)
    assert a != cache_ttft.make_workload(PAIR, "oa", LENGTHS, 10, seed=4)
    assert {m for m, _ in a.requests} <= set(PAIR)
    assert [n for _, n in a.requests[:5]] == [min(n, cache_ttft.DEFAULT_MAX_PROMPT_TOKENS)
                                              + TEMPLATE_TOKENS for n in LENGTHS]


def test_the_cache_only_removes_work(profile) -> None:
    workload = cache_ttft.make_workload(PAIR, "oa", LENGTHS, 12, seed=1)
    cached = cache_ttft.run_workload(workload, profile, 4 * GIB, (FLEXSERVE,))
    cold = cache_ttft.run_workload(workload, profile, 0, (FLEXSERVE,))
    pairs = list(zip(cached.ttft_s["flexserve"], cold.ttft_s["flexserve"], strict=True))
    assert all(warm <= plain + 1e-9 for warm, plain in pairs)
    faster = sum(1 for warm, plain in pairs[2:] if warm < plain - 1e-6)
    assert faster >= len(pairs[2:]) // 2  # both models fit: warm requests skip the restore
    assert cached.mean_ttft_s("flexserve") < cold.mean_ttft_s("flexserve")


def test_flexserve_with_a_cache_beats_both_strawmen(profile) -> None:
    workload = cache_ttft.make_workload(("qwen3-1.7b", "llama3.1-8b"), "ad", LENGTHS, 10)
    result = cache_ttft.run_workload(workload, profile, 4 * GIB)
    assert result.speedup("strawman-opt") > 1 and result.speedup("strawman") > 1
    assert result.mean_ttft_s("strawman") > result.mean_ttft_s("strawman-opt")


def test_cli_cache_prints_every_workload(capsys, tmp_path, shared_datasets) -> None:
    out_csv = tmp_path / "cache.csv"
    assert main(["bench", "cache", "--requests", "4", "--sets", "ad", "--csv",
                 str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert out.count("Alpaca (AD)") == len(cache_ttft.MODEL_PAIRS)
    rows = out_csv.read_text().splitlines()
    assert len(rows) == 1 + len(cache_ttft.MODEL_PAIRS) * 4 * len(cache_ttft.CACHE_SYSTEMS)


def test_cli_cache_rejects_bad_values(capsys) -> None:
    assert main(["bench", "cache", "--requests", "1"]) == 2
    assert main(["bench", "cache", "--sets", "uc"]) == 2
    assert "flexserve: error:" in capsys.readouterr().err


def test_reclaim_returns_what_was_asked_and_costs_grow_with_size(profile) -> None:
    from flexserve.bench.reclaim import reclaim_costs

    small, large = reclaim_costs(profile, (8, 32))
    assert small.returned_mib == 8 and large.returned_mib == 32
    assert small.layers == 2 and large.layers == 8  # whole 4 MiB layers
    assert 0 < small.device_s < large.device_s
    assert main(["bench", "reclaim", "--mib", "4"]) == 0


def test_cli_bench_paper_quick_writes_the_report(capsys, tmp_path, shared_datasets) -> None:
    out = tmp_path / "paper"
    assert main(["bench", "paper", "--quick", "--only", "fig1,fig11", "--out", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "fig1" in report and "fig11" in report and "fig8" not in report
    assert (out / "fig1.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["bench", "paper", "--only", "fig99", "--out", str(out)]) == 2
