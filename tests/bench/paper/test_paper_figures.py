"""Every reproduced figure's quick run: rows, a PNG, comparisons that name their source."""

from __future__ import annotations

import pytest

from flexserve.bench.paper import fig1, fig2, fig5_6, fig8, fig9, fig10, fig11, sweep
from flexserve.bench.paper.figure import Comparison, Figure
from flexserve.errors import ConfigError
from flexserve.timing.profile import load_profile

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MODULES = (fig5_6, fig11, fig1, fig2, fig8, fig9, fig10, sweep)


@pytest.fixture(scope="module")
def profile():
    return load_profile("rk3588")


@pytest.fixture(scope="module")
def figures(profile) -> dict[str, Figure]:
    return {m.NAME: m.run(profile, True) for m in MODULES}


@pytest.mark.parametrize("name", [m.NAME for m in MODULES])
def test_a_quick_run_gives_rows_and_a_png(figures, name, tmp_path) -> None:
    fig = figures[name]
    assert fig.name == name and fig.rows
    assert all(len(row) == len(fig.columns) for row in fig.rows)
    png = fig.plot(tmp_path / f"{name}.png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    csv = fig.write_csv(tmp_path / f"{name}.csv").read_text().splitlines()
    assert csv[0] == ",".join(fig.columns) and len(csv) == len(fig.rows) + 1


def test_every_comparison_has_a_source_and_a_ratio(figures) -> None:
    for fig in figures.values():
        for c in fig.comparisons:
            assert c.paper > 0 and c.ratio == pytest.approx(c.ours / c.paper)
            assert "source" in c.note or "calibration input" in c.note


def test_speedups_are_compared_with_the_papers_headline(figures) -> None:
    labels = [c.label for c in figures["fig5_6"].comparisons]
    assert labels == ["mean TTFT speedup vs Strawman", "mean TTFT speedup vs Strawman-OPT"]
    assert [c.paper for c in figures["fig5_6"].comparisons] == [10.05, 2.44]


def test_the_ablation_steps_each_cut_ttft(figures) -> None:
    got = fig11.reductions_pct(figures["fig11"])
    assert list(got) == ["flex-npu", "flex-mem", "pipeline", "flexserve"]
    assert all(0 < pct < 100 for pct in got.values())
    assert [c.paper for c in figures["fig11"].comparisons] == [49.01, 37.89, 36.59]


def test_the_pipeline_step_is_flexserve_without_cache() -> None:
    strawman, npu, mem, pipe = fig11.cold_steps()
    assert npu.compute.value == "npu" and npu.memory is strawman.memory
    assert mem.memory.value == "flexmem" and not mem.pipeline
    assert pipe.pipeline and not pipe.cache


def test_fig1_is_marked_as_a_calibration_input(figures) -> None:
    fig = figures["fig1"]
    assert all("calibration input, not a validation" in c.note for c in fig.comparisons)
    flexmem = [float(r[2]) for r in fig.rows if r[1] == "flexmem"]
    cma = [float(r[2]) for r in fig.rows if r[1] == "cma-occupied"]
    assert all(f < c for f, c in zip(flexmem, cma, strict=True))
    assert flexmem == sorted(flexmem)


def test_the_sweep_covers_both_profiles(figures) -> None:
    fig = figures["sweep"]
    assert set(fig.column("profile")) == {"rk3588", "sd8gen3"}
    assert all(c.label.startswith("rk3588") for c in fig.comparisons)


def test_a_figure_refuses_ragged_rows() -> None:
    with pytest.raises(ConfigError):
        Figure("x", "x", ("a", "b"), (("1",),), lambda f, p: None)
    with pytest.raises(ConfigError):
        Figure("x", "x", ("a",), (), lambda f, p: None)
    with pytest.raises(ConfigError):
        _ = Comparison("x", 1.0, 0.0, "x", "").ratio


def test_fig2_strawman_stages_are_set_beside_tzllm(figures) -> None:
    labels = [c.label for c in figures["fig2"].comparisons]
    assert labels == [f"Strawman {c} at 512 tokens" for c in
                      ("alloc", "io", "decrypt", "init", "compute")]
    compute = figures["fig2"].comparisons[-1]
    assert 0.9 < compute.ratio < 1.1  # CPU prefill: the profile's GEMM rate is TZ-LLM's


def test_fig9_flexserve_waits_least_in_every_workflow(figures) -> None:
    rows = figures["fig9"].rows
    for workflow in dict.fromkeys(r[0] for r in rows):
        ttft = {r[1]: float(r[4]) for r in rows if r[0] == workflow}
        assert ttft["flexserve"] < ttft["strawman-opt"] < ttft["strawman"]


def test_fig10_on_demand_protection_only_ever_lowers_the_overhead(figures) -> None:
    rows = figures["fig10"].rows
    always = [float(r[3]) for r in rows]
    on_demand = [float(r[4]) for r in rows]
    assert all(o <= a + 1e-9 for o, a in zip(on_demand, always, strict=True))
    assert on_demand[-1] < on_demand[0]  # rarer requests: stage-2 is off longer
    assert fig10.switch_cycle_s(load_profile("rk3588")) > 0  # the EL2 hash is priced
