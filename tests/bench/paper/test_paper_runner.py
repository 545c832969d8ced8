"""run_all: outputs, REPORT.md mentions every figure, CSVs are byte-identical across runs."""

from __future__ import annotations

import json

import pytest

from flexserve.bench.paper import runner
from flexserve.errors import ConfigError
from flexserve.timing.profile import load_profile


@pytest.fixture(scope="module")
def profile():
    return load_profile("rk3588")


@pytest.fixture(scope="module")
def two_runs(profile, tmp_path_factory):
    dirs = [tmp_path_factory.mktemp(f"run{i}") for i in (1, 2)]
    seen: list[tuple[str, int, int]] = []
    runner.run_all(profile, dirs[0], True, None, lambda *a: seen.append(a))
    runner.run_all(profile, dirs[1], True)
    return dirs, seen


def test_every_output_is_written(two_runs) -> None:
    (out, _), seen = two_runs
    for name in runner.FIGURES:
        assert (out / f"{name}.csv").is_file()
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    config = json.loads((out / "config.json").read_text())
    assert config["profile"] == "rk3588" and config["quick"] is True
    assert config["seeds"] and set(config["versions"]) >= {"flexserve", "python"}
    assert [s[0] for s in seen] == list(runner.FIGURES)
    assert seen[-1][1:] == (len(runner.FIGURES), len(runner.FIGURES))


def test_the_report_mentions_every_figure(two_runs) -> None:
    (out, _), _ = two_runs
    report = (out / "REPORT.md").read_text()
    for name in runner.FIGURES:
        assert f"## {name}:" in report and f"({name}.png)" in report
    assert "| ours / paper |" in report


def test_two_runs_give_byte_identical_csvs(two_runs) -> None:
    (a, b), _ = two_runs
    for name in runner.FIGURES:
        assert (a / f"{name}.csv").read_bytes() == (b / f"{name}.csv").read_bytes()


def test_only_runs_the_named_figures(profile, tmp_path) -> None:
    figures = runner.run_all(profile, tmp_path, True, only=["fig1"])
    assert [f.name for f in figures] == ["fig1"]
    assert not (tmp_path / "fig8.csv").exists()
    assert "## fig1:" in (tmp_path / "REPORT.md").read_text()


@pytest.mark.parametrize("only", [[], ["fig99"]])
def test_bad_selections_are_refused(profile, tmp_path, only) -> None:
    with pytest.raises(ConfigError):
        runner.run_all(profile, tmp_path, True, only=only)
