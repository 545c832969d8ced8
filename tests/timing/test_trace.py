"""Trace export and reports: Chrome trace JSON, the event-log record, bounds, TTFT breakdown."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest

from flexserve.errors import ConfigError
from flexserve.timing import trace
from flexserve.timing.gantt import PlotUnavailableError, save_gantt_png
from flexserve.timing.profile import DeviceProfile, load_profile
from flexserve.timing.sim import CPU, FLASH, NPU, DagResult, DeviceSim, Event, Task, run_dag


@pytest.fixture(scope="module")
def p() -> DeviceProfile:
    return load_profile("rk3588")


def three_layers(p: DeviceProfile, decrypt_shards: int = 1) -> tuple[DeviceSim, DagResult]:
    tasks: list[Task] = [Task("boot", CPU, 0.25, category="init")]
    for i in range(3):
        tasks.append(Task(f"load:blk.{i}", FLASH, 1.0, ("boot",), priority=i))
        tasks.append(Task(f"decrypt:blk.{i}", CPU, 0.5, (f"load:blk.{i}",), priority=i,
                          shards=decrypt_shards))
        after = (f"decrypt:blk.{i}", f"compute:blk.{i - 1}") if i else (f"decrypt:blk.{i}",)
        tasks.append(Task(f"compute:blk.{i}", NPU, 2.0, after))
    sim = DeviceSim(p)
    return sim, run_dag(sim, tasks)


def test_chrome_trace_is_valid_json_with_one_lane_per_resource_unit(p: DeviceProfile,
                                                                    tmp_path: Path) -> None:
    _, result = three_layers(p, decrypt_shards=2)
    path = trace.write_chrome_trace(result.log, tmp_path / "t.json", process_name="rk3588")
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(trace.chrome_trace(result.log, process_name="rk3588")))
    threads = {e["tid"]: e["args"]["name"] for e in data["traceEvents"]
               if e["ph"] == "M" and e["name"] == "thread_name"}
    assert list(threads.values()) == ["flash", "cpu.0", "cpu.1", "npu"]
    spans = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == len(result.log) == 1 + 3 + 6 + 3
    load1 = next(e for e in spans if e["name"] == "load:blk.1")
    assert (load1["ts"], load1["dur"], threads[load1["tid"]]) == (1_250_000.0, 1_000_000.0,
                                                                  "flash")
    assert load1["cat"] == "io" and load1["args"] == {"task": "load:blk.1"}
    for tid in threads:  # spans of one lane never overlap
        lane = sorted((e["ts"], e["ts"] + e["dur"]) for e in spans if e["tid"] == tid)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(lane))


def test_event_log_record_round_trips(p: DeviceProfile, tmp_path: Path) -> None:
    _, result = three_layers(p, decrypt_shards=4)
    path = trace.write_event_log(result.log, tmp_path / "log.json", meta={"profile": "rk3588"})
    back = trace.read_event_log(path)
    assert tuple(back) == result.log
    raw = json.loads(path.read_text())
    assert raw["format"] == trace.LOG_FORMAT and raw["meta"] == {"profile": "rk3588"}
    with pytest.raises(ConfigError):
        trace.event_log_from_dict({"format": "other", "version": 1, "events": []})
    with pytest.raises(ConfigError):
        trace.event_log_from_dict({"format": trace.LOG_FORMAT, "version": 1,
                                   "events": [{"label": "x"}]})


def test_busiest_resource_bound_and_efficiency(p: DeviceProfile) -> None:
    sim, result = three_layers(p)
    assert result.makespan_s == 7.75
    assert trace.busy_s_by_resource(result.log) == {CPU: 1.75, FLASH: 3.0, NPU: 6.0}
    assert trace.busiest_resource_bound(result.log, sim.capacities) == (NPU, 6.0)
    assert trace.pipeline_efficiency(result.log, sim.capacities,
                                     result.makespan_s) == pytest.approx(6.0 / 7.75)
    with pytest.raises(ConfigError):
        trace.busiest_resource_bound(result.log, {NPU: 1})


def test_ttft_breakdown_partitions_the_time(p: DeviceProfile) -> None:
    _, result = three_layers(p)
    parts = trace.ttft_breakdown(result.log)
    # [0, .25] init; [.25, 1.25] load 0; [1.25, 1.75] decrypt 0 (load 1 hidden under it);
    # [1.75, 7.75] compute, with the rest of the I/O and decryption hidden under it
    assert parts == {"compute": 6.0, "decrypt": 0.5, "io": 1.0, "alloc": 0.0, "init": 0.25,
                     "other": 0.0, "idle": 0.0}
    assert sum(parts.values()) == result.makespan_s
    assert trace.busy_by_category(result.log) == {"init": 0.25, "io": 3.0, "decrypt": 1.5,
                                                  "compute": 6.0}


def test_ttft_breakdown_counts_idle_and_custom_precedence() -> None:
    log = [Event(CPU, 0, "boot", 0.0, 1.0), Event(NPU, 0, "prefill", 2.0, 3.0),
           Event(FLASH, 0, "read", 2.5, 4.0)]
    assert trace.ttft_breakdown(log, end_s=4.0) == {
        "compute": 1.0, "decrypt": 0.0, "io": 1.0, "alloc": 0.0, "init": 1.0, "other": 0.0,
        "idle": 1.0}
    io_first = trace.ttft_breakdown(log, precedence=("io", "compute", "init"))
    assert io_first == {"io": 1.5, "compute": 0.5, "init": 1.0, "idle": 1.0}


def test_categories_from_labels_and_attrs() -> None:
    def cat(label: str, **attrs: str) -> str:
        return trace.category_of(Event(CPU, 0, label, 0.0, 1.0, attrs))

    assert cat("load:blk.3") == "io"
    assert cat("decrypt blk.3") == "decrypt"
    assert cat("cma/alloc") == "alloc"
    assert cat("tokenizer") == "init"
    assert cat("decode tok 5") == "compute"
    assert cat("mystery") == "other"
    assert cat("load:blk.3", category="alloc") == "alloc"


def test_gantt_png_or_a_clear_error(p: DeviceProfile, tmp_path: Path) -> None:
    _, result = three_layers(p)
    if importlib.util.find_spec("matplotlib") is None:
        with pytest.raises(PlotUnavailableError, match="matplotlib"):
            save_gantt_png(result.log, tmp_path / "g.png")
    else:
        out = save_gantt_png(result.log, tmp_path / "g.png", title="3 layers")
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
