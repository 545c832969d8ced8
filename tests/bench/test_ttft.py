"""The cold-start TTFT sweep and breakdown: arithmetic, consistency, CLI (timing only)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from flexserve.bench import published, ttft
from flexserve.cli import main
from flexserve.systems.config import SYSTEMS
from flexserve.timing.profile import load_profile
from flexserve.timing.trace import busiest_resource_bound


@pytest.fixture(scope="module")
def profile():
    return load_profile("rk3588")


@pytest.fixture(scope="module")
def points(profile):
    return ttft.ttft_sweep(profile, ("qwen3-0.6b", "llama3.1-8b"), (64, 512))


def test_a_point_times_every_system_and_speedups_are_ttft_ratios(points) -> None:
    for p in points:
        assert set(p.timings) == set(SYSTEMS)
        assert p.speedup("flexserve", "strawman") == pytest.approx(
            p.ttft_s("strawman") / p.ttft_s("flexserve"))
        assert 0 < p.efficiency("flexserve") <= 1 + 1e-9


def test_averages_are_means_of_the_per_point_ratios(points) -> None:
    ratios = [p.ttft_s("strawman-opt") / p.ttft_s("flexserve") for p in points]
    arith, geo = ttft.average_speedup(points, "strawman-opt")
    assert arith == pytest.approx(sum(ratios) / len(ratios))
    assert min(ratios) <= geo <= arith <= max(ratios)


def test_efficiency_is_the_busiest_resource_bound_over_ttft(points) -> None:
    p = points[-1]
    t = p.timings["flexserve"]
    assert p.efficiency("flexserve") == pytest.approx(
        busiest_resource_bound(t.log, t.capacities)[1] / t.ttft_s)


def test_a_serial_strawman_breakdown_is_its_stage_times(profile) -> None:
    point = ttft.time_point("qwen3-1.7b", 128, profile)
    t = point.timings["strawman"]
    assert sum(t.breakdown.values()) == pytest.approx(t.ttft_s)
    alloc = [e for e in t.log if e.label == "alloc:model"]
    assert len(alloc) == 1 and t.breakdown["alloc"] == pytest.approx(alloc[0].duration_s)
    assert t.breakdown["idle"] == pytest.approx(0.0, abs=1e-9)


def test_a_checkpointed_init_only_removes_time(profile) -> None:
    plain = ttft.time_point("qwen3-0.6b", 64, profile)
    fast = ttft.time_point("qwen3-0.6b", 64, profile, ttft.with_checkpointed_init())
    for name in SYSTEMS:
        assert fast.ttft_s(name) < plain.ttft_s(name)


def test_unknown_models_and_lengths_are_config_errors(profile) -> None:
    from flexserve.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown shape-only model"):
        ttft.time_point("gpt-5", 64, profile)
    with pytest.raises(ConfigError):
        ttft.time_point("qwen3-0.6b", 0, profile)


def test_the_csv_is_deterministic(points, tmp_path: Path, profile) -> None:
    first = ttft.write_csv(points, tmp_path / "a.csv").read_text()
    again = ttft.ttft_sweep(profile, ("qwen3-0.6b", "llama3.1-8b"), (64, 512))
    assert ttft.write_csv(again, tmp_path / "b.csv").read_text() == first
    rows = list(csv.DictReader(first.splitlines()))
    assert len(rows) == len(points) * len(SYSTEMS)


def test_cli_ttft_prints_the_averages_beside_the_paper(capsys, tmp_path: Path) -> None:
    out_csv = tmp_path / "t.csv"
    assert main(["bench", "ttft", "--models", "qwen3-0.6b", "--lengths", "32,64",
                 "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert f"{published.TTFT_SPEEDUP_VS_STRAWMAN.value:.2f}x" in out
    assert f"{published.TTFT_SPEEDUP_VS_STRAWMAN_OPT.value:.2f}x" in out
    assert len(out_csv.read_text().splitlines()) == 1 + 2 * len(SYSTEMS)


def test_cli_breakdown_sets_the_strawman_beside_tzllm(capsys) -> None:
    assert main(["bench", "breakdown", "--model", "qwen3-0.6b", "--prompt-tokens", "64"]) == 0
    out = capsys.readouterr().out
    assert "NW-Base" in out and "Strawman" in out and "TZ-LLM" in out
    assert "164.558" in out  # TZ-LLM's measured CPU prefill, the reference for compute


@pytest.mark.parametrize("argv", [["bench", "ttft", "--lengths", "0"],
                                  ["bench", "ttft", "--models", "nope"],
                                  ["bench", "breakdown", "--model", "smollm2-135m"]])
def test_cli_bad_input_is_a_one_line_error(capsys, argv) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("flexserve: error:") and len(err.strip().splitlines()) == 1
