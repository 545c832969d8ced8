"""The request as a task graph: overlap, barriers, ordering of the four systems (timing only)."""

from __future__ import annotations

import pytest

from flexserve.catalog import resolve
from flexserve.catalog.shapes import PAPER_MODELS
from flexserve.systems.config import FLEXSERVE, NW_BASE, STRAWMAN, STRAWMAN_OPT, SYSTEMS
from flexserve.systems.schedule import build_tasks, time_request
from flexserve.systems.shape_plan import shape_trace
from flexserve.tee.framework.trace import StageKind
from flexserve.timing.profile import load_profile
from flexserve.timing.sim import DeviceSim
from flexserve.timing.trace import busiest_resource_bound


@pytest.fixture(scope="module")
def profile():
    return load_profile("rk3588")


def _times(log, prefix: str) -> dict[str, tuple[float, float]]:
    spans: dict[str, tuple[float, float]] = {}
    for e in log:
        if e.label.startswith(prefix):
            layer = e.label.split(":", 1)[1]
            lo, hi = spans.get(layer, (e.start_s, e.end_s))
            spans[layer] = (min(lo, e.start_s), max(hi, e.end_s))
    return spans


@pytest.mark.parametrize("model", ["llama3.1-8b", "qwen3-8b"])
def test_flexserve_beats_strawman_opt_beats_strawman(profile, model: str) -> None:
    trace = shape_trace(PAPER_MODELS[model], 128, 16)
    ttft = {name: time_request(trace, s, profile).ttft_s for name, s in SYSTEMS.items()}
    assert ttft["flexserve"] < ttft["strawman-opt"] < ttft["strawman"]


@pytest.mark.parametrize("system", list(SYSTEMS.values()), ids=list(SYSTEMS))
def test_ttft_is_at_least_the_busiest_resource_bound(profile, system) -> None:
    trace = shape_trace(PAPER_MODELS["llama3.1-8b"], 128, 16)
    timing = time_request(trace, system, profile)
    _, bound_s = busiest_resource_bound(timing.log, timing.capacities)
    assert timing.ttft_s >= bound_s - 1e-9
    assert sum(timing.breakdown.values()) == pytest.approx(timing.ttft_s)


def test_the_pipeline_overlaps_restore_with_compute(profile) -> None:
    timing = time_request(shape_trace(PAPER_MODELS["llama3.1-8b"], 128, 16), FLEXSERVE,
                          profile)
    compute = _times(timing.log, "compute:")
    decrypt = _times(timing.log, "decrypt:")
    load = _times(timing.log, "load:")
    overlapped = [i for i in range(31) for j in range(i + 1, 32)
                  if load[f"blk.{j}"][0] < compute[f"blk.{i}"][1]
                  and load[f"blk.{j}"][1] > compute[f"blk.{i}"][0]]
    assert overlapped, "no later layer was loaded while an earlier layer computed"
    for i in range(32):  # in-layer order is kept
        assert compute[f"blk.{i}"][0] >= decrypt[f"blk.{i}"][1] - 1e-12
        if i:
            assert compute[f"blk.{i}"][0] >= compute[f"blk.{i - 1}"][1] - 1e-12


def test_strawman_decrypts_the_whole_model_before_computing(profile) -> None:
    timing = time_request(shape_trace(PAPER_MODELS["qwen3-1.7b"], 64, 8), STRAWMAN, profile)
    last_decrypt = max(hi for _, hi in _times(timing.log, "decrypt:").values())
    first_compute = min(lo for lo, _ in _times(timing.log, "compute:").values())
    assert first_compute >= last_decrypt
    assert {e.resource for e in timing.log if e.label.startswith("compute:")} == {"cpu"}
    assert timing.breakdown["alloc"] > 0 and timing.breakdown["init"] > 0


def test_nw_base_neither_decrypts_nor_allocates_secure_memory(profile) -> None:
    timing = time_request(shape_trace(PAPER_MODELS["qwen3-0.6b"], 64, 8), NW_BASE, profile)
    assert timing.breakdown["decrypt"] == 0
    assert not [e for e in timing.log if e.label.startswith(("decrypt:", "copy:"))]


def test_strawman_opt_pays_cma_per_layer_and_the_npu_handover(profile) -> None:
    trace = shape_trace(PAPER_MODELS["llama3.2-3b"], 128, 8)
    tasks = {t.name: t for t in build_tasks(trace, STRAWMAN_OPT, profile)}
    flex = {t.name: t for t in build_tasks(trace, FLEXSERVE, profile)}
    assert tasks["alloc:blk.0"].duration_s > 5 * flex["alloc:blk.0"].duration_s
    assert tasks["npu-handover"].duration_s > flex["npu-handover"].duration_s


def test_allocating_up_front_is_an_option(profile) -> None:
    trace = shape_trace(PAPER_MODELS["qwen3-1.7b"], 128, 8)
    upfront = STRAWMAN_OPT.with_options(alloc_upfront=True)
    names = {t.name for t in build_tasks(trace, upfront, profile)}
    assert "alloc:model" in names and "alloc:blk.0" not in names
    assert time_request(trace, upfront, profile).ttft_s > 0


def test_shape_trace_matches_the_catalog(profile) -> None:
    trace = shape_trace(PAPER_MODELS["llama3.1-8b"], 1024, 32)
    assert trace.bytes_of(StageKind.DECRYPT) == resolve("llama3.1-8b").size_bytes
    timing = time_request(trace, FLEXSERVE, profile)
    assert timing.ttft_s > 0 and timing.decode_tokens_per_s > 0


@pytest.mark.benchmark
def test_bench_timing_only_llama_8b_at_1024_tokens(benchmark, profile) -> None:
    """Timing-only mode: Llama 3.1 8B, 1,024 prompt tokens, all four systems (seconds)."""
    trace = shape_trace(PAPER_MODELS["llama3.1-8b"], 1024, 32)
    timings = benchmark(lambda: [time_request(trace, s, profile) for s in SYSTEMS.values()])
    assert all(t.ttft_s > 0 for t in timings)


def test_same_input_same_log(profile) -> None:
    trace = shape_trace(PAPER_MODELS["qwen3-0.6b"], 100, 4)
    assert time_request(trace, FLEXSERVE, profile).log == \
        time_request(trace, FLEXSERVE, profile).log


def test_tasks_run_on_known_resources(profile) -> None:
    sim = DeviceSim(profile)
    for system in SYSTEMS.values():
        for task in build_tasks(shape_trace(PAPER_MODELS["qwen3-0.6b"], 16, 1), system, profile):
            assert task.resource in sim.capacities
