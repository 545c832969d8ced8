"""Figures 1b, 7 and 10b: quick runs, determinism, and the shapes the mechanisms imply."""

from __future__ import annotations

import pytest

from flexserve.bench.paper import fig1b, fig7, fig10b
from flexserve.bench.paper.background import BackgroundSpec, build
from flexserve.bench.paper.contention import APPS, App, Load, cpu_share, dram_share, share
from flexserve.bench.paper.figure import rows_where
from flexserve.bench.paper.nw_alloc import allocate, chunk_times
from flexserve.cli import main
from flexserve.errors import ConfigError
from flexserve.nwos.page import MAX_ORDER_PAGES
from flexserve.soc.constants import GIB, MIB
from flexserve.systems.config import FLEXSERVE, STRAWMAN_OPT, MemoryKind
from flexserve.timing.profile import load_profile
from flexserve.timing.sim import FLASH, Task

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def profile():
    return load_profile("rk3588")


@pytest.fixture(scope="module")
def f7(profile):
    return fig7.run(profile, True)


@pytest.fixture(scope="module")
def f1b(profile):
    return fig1b.run(profile, True)


def _value(fig, column: str, **where: str) -> float:
    (row,) = rows_where(fig, **where)
    return float(row[column])


# ----- Figure 7 -------------------------------------------------------------------------------

def test_fig7_quick_covers_every_system_and_level(f7, tmp_path) -> None:
    assert {r[1] for r in f7.rows} == {s.name for s in fig7.SYSTEMS}
    assert {int(r[2]) for r in f7.rows} == set(fig7.QUICK_LEVELS_GIB)
    assert all(r[3] == "ok" for r in f7.rows)
    assert f7.plot(tmp_path / "fig7.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("system", [s.name for s in fig7.SYSTEMS])
def test_fig7_pressure_never_makes_allocation_or_ttft_cheaper(f7, system) -> None:
    low, high = (str(level) for level in fig7.QUICK_LEVELS_GIB)
    for column in ("alloc_s", "ttft_s"):
        assert (_value(f7, column, system=system, background_gib=high)
                >= _value(f7, column, system=system, background_gib=low))


def test_fig7_cma_migrates_more_as_the_background_grows(f7) -> None:
    low, high = (str(level) for level in fig7.QUICK_LEVELS_GIB)
    for system in ("strawman", "strawman-opt"):
        assert (_value(f7, "migrated_mib", system=system, background_gib=high)
                > _value(f7, "migrated_mib", system=system, background_gib=low))
    for system in ("nw-base", "flexserve"):  # page-granular: nothing is ever migrated
        assert all(float(r["migrated_mib"]) == 0 for r in rows_where(f7, system=system))


def test_fig7_high_pressure_reclaims_and_flexserve_stays_fastest(f7) -> None:
    high = str(fig7.QUICK_LEVELS_GIB[-1])
    flex = rows_where(f7, system="flexserve", background_gib=high)[0]
    assert float(flex["dropped_mib"]) > 0 and float(flex["swapped_mib"]) > 0
    others = [float(r["ttft_s"]) for r in rows_where(f7, background_gib=high)
              if r["system"] != "flexserve"]
    assert float(flex["ttft_s"]) < min(others)


def test_fig7_one_measurement_is_deterministic(profile) -> None:
    first = fig7.measure("qwen3-0.6b", STRAWMAN_OPT, 12, profile)
    second = fig7.measure("qwen3-0.6b", STRAWMAN_OPT, 12, profile)
    assert first[0] == second[0] and first[1].work == second[1].work


def test_swap_writes_become_a_flash_task_the_next_stage_waits_for() -> None:
    tasks = [Task("alloc:blk.0", "cpu", 1.0, category="alloc"),
             Task("load:blk.0", FLASH, 2.0, ("alloc:blk.0",), category="io")]
    out = fig7.with_measured_allocs(tasks, [(0.5, 3.0)])
    names = [t.name for t in out]
    assert names == ["alloc:blk.0", "swap-out:alloc:blk.0", "load:blk.0"]
    assert out[0].duration_s == 0.5 and out[1].resource == FLASH and out[1].duration_s == 3.0
    assert out[2].deps == ("swap-out:alloc:blk.0",)
    with pytest.raises(ConfigError):
        fig7.with_measured_allocs(tasks, [])


# ----- the mechanisms under the figures ------------------------------------------------------

def test_cma_grows_block_by_block_and_layers_inside_a_block_are_free(profile) -> None:
    world = build(BackgroundSpec(dram_bytes=1 * GIB, page_cache_bytes=64 * MIB),
                  cma_bytes=64 * MIB)
    chunks = [100, 100, MAX_ORDER_PAGES, 50]
    run = allocate(world, MemoryKind.CMA, chunks)
    assert [c.region_changes for c in run.chunks] == [1, 0, 1, 0]
    assert chunk_times(run.chunks[1], MemoryKind.CMA, profile) == (0.0, 0.0)


def test_flexmem_under_a_full_background_pays_for_reclaim(profile) -> None:
    spec = BackgroundSpec(dram_bytes=1 * GIB, kernel_bytes=32 * MIB, page_cache_bytes=32 * MIB,
                          app_bytes=896 * MIB, swap_bytes=256 * MIB)
    quiet = BackgroundSpec(dram_bytes=1 * GIB, kernel_bytes=32 * MIB, page_cache_bytes=64 * MIB)
    idle = allocate(build(quiet), MemoryKind.FLEXMEM, [32768])
    busy = allocate(build(spec), MemoryKind.FLEXMEM, [32768])
    assert busy.work.pages_reclaimed > 0 and idle.work.pages_reclaimed == 0
    idle_s = sum(chunk_times(idle.chunks[0], MemoryKind.FLEXMEM, profile))
    core_s, flash_s = chunk_times(busy.chunks[0], MemoryKind.FLEXMEM, profile)
    assert core_s + flash_s > idle_s and flash_s > 0


def test_a_background_refuses_negative_sizes() -> None:
    with pytest.raises(ConfigError):
        BackgroundSpec(app_bytes=-1)


# ----- Figure 1b ------------------------------------------------------------------------------

def test_fig1b_cma_latency_grows_with_how_full_memory_is(f1b) -> None:
    idle = _value(f1b, "alloc_ms", workload="idle", mechanism="cma")
    for busier in ("page-cache", "anon", "full", "fragmented"):
        assert _value(f1b, "alloc_ms", workload=busier, mechanism="cma") > idle
    assert (_value(f1b, "migrated_mib", workload="anon", mechanism="cma")
            > _value(f1b, "migrated_mib", workload="idle", mechanism="cma"))


def test_fig1b_flexmem_never_migrates_and_beats_cma_once_memory_is_busy(f1b) -> None:
    assert all(float(r["migrated_mib"]) == 0 for r in rows_where(f1b, mechanism="flexmem"))
    for busy in ("page-cache", "anon", "full", "fragmented"):
        assert (_value(f1b, "alloc_ms", workload=busy, mechanism="flexmem")
                < _value(f1b, "alloc_ms", workload=busy, mechanism="cma"))


def test_fig1b_is_deterministic(profile, f1b) -> None:
    assert fig1b.run(profile, True).rows == f1b.rows


# ----- Figure 10b -----------------------------------------------------------------------------

def test_an_app_alone_runs_at_full_speed(profile) -> None:
    idle = Load("idle", 1.0, 0.0, 0.0)
    assert all(share(app, idle, profile).speed == pytest.approx(1.0) for app in APPS)


def test_sharing_rules() -> None:
    assert cpu_share(App("a", 1, 0, 0, "t"), busy_cores=3.0, cores=4) == 1.0
    assert cpu_share(App("a", 4, 0, 0, "t"), busy_cores=4.0, cores=4) == 0.5
    assert dram_share(5.0, 5.0, bus=20.0) == 1.0
    assert dram_share(10.0, 30.0, bus=20.0) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        App("bad", 0, 1.0, 0.5, "t")


def test_fig10b_flexserve_spares_cores_and_strawman_spares_bandwidth(profile) -> None:
    fig = fig10b.run(profile, True)
    assert fig10b.run(profile, True).rows == fig.rows
    speed = {(r["system"], r["app"]): float(r["app_speed"])
             for r in rows_where(fig, phase="request")}
    assert speed[("flexserve", "multicore")] > speed[("strawman", "multicore")]
    assert speed[("flexserve", "sqlite")] >= 1 - profile.stage2.normal_app_overhead_fraction - 1e-9
    assert speed[("flexserve", "stream")] < speed[("flexserve", "sqlite")]
    decode = rows_where(fig, system=FLEXSERVE.name, app="stream", phase="decode")[0]
    assert float(decode["tee_cores"]) == 0 and float(decode["inference_dram_gbps"]) > 10


# ----- the CLI --------------------------------------------------------------------------------

@pytest.mark.slow
def test_bench_fig7_quick_via_the_cli(tmp_path, capsys) -> None:
    assert main(["bench", "fig7", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig7.csv").read_text().startswith("model,system,background_gib")
    assert "fig7" in (tmp_path / "REPORT.md").read_text()
    assert (tmp_path / "fig7.png").read_bytes()[:8] == PNG_MAGIC


def test_every_figure_is_a_bench_suite() -> None:
    from flexserve.bench.paper.runner import FIGURES
    from flexserve.commands.bench import SUITES

    assert set(FIGURES) <= {s.name for s in SUITES}
    assert {"engine", "ttft", "pressure", "paper"} <= {s.name for s in SUITES}
