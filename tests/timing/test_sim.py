"""DeviceSim and run_dag: scenario tests that assert whole event logs (exact starts/ends)."""

from __future__ import annotations

import copy
from collections.abc import Generator
from typing import Any

import pytest

from flexserve.catalog.shapes import QWEN3_0_6B, layer_sizes
from flexserve.errors import ConfigError
from flexserve.timing import compute, costs, trace
from flexserve.timing.profile import DeviceProfile, load_profile, profile_from_dict
from flexserve.timing.sim import CPU, FLASH, NPU, DeviceSim, Event, Task, run_dag


@pytest.fixture(scope="module")
def p() -> DeviceProfile:
    return load_profile("rk3588")


@pytest.fixture(scope="module")
def p10() -> DeviceProfile:
    """The RK3588 profile with a round 1e10 B/s DRAM bandwidth, for exact contention logs."""
    raw = copy.deepcopy(load_profile("rk3588").to_dict())
    raw["dram"]["bandwidth_bytes_per_s"]["value"] = 1.0e10
    return profile_from_dict(raw)


def ev(resource: str, unit: int, label: str, start: float, end: float, **attrs: Any) -> Event:
    return Event(resource, unit, label, start, end, attrs)


def pipeline(layers: int) -> list[Task]:
    """alloc-free pipeline: load (flash) -> decrypt (cpu) -> compute (npu), compute in order."""
    tasks: list[Task] = []
    for i in range(layers):
        tasks.append(Task(f"load{i}", FLASH, 1.0, priority=i, category="io"))
        tasks.append(Task(f"dec{i}", CPU, 0.5, (f"load{i}",), priority=i, category="decrypt"))
        after = (f"dec{i}", f"comp{i - 1}") if i else (f"dec{i}",)
        tasks.append(Task(f"comp{i}", NPU, 2.0, after, category="compute"))
    return tasks


def test_three_layer_pipeline_overlaps_load_and_decrypt_with_compute(p: DeviceProfile) -> None:
    result = run_dag(DeviceSim(p), pipeline(3))
    io = {"category": "io"}
    de = {"category": "decrypt"}
    co = {"category": "compute"}
    assert result.log == (  # completion order
        ev(FLASH, 0, "load0", 0.0, 1.0, task="load0", **io),
        ev(CPU, 0, "dec0", 1.0, 1.5, task="dec0", **de),
        ev(FLASH, 0, "load1", 1.0, 2.0, task="load1", **io),
        ev(CPU, 0, "dec1", 2.0, 2.5, task="dec1", **de),
        ev(FLASH, 0, "load2", 2.0, 3.0, task="load2", **io),
        ev(NPU, 0, "comp0", 1.5, 3.5, task="comp0", **co),
        ev(CPU, 0, "dec2", 3.0, 3.5, task="dec2", **de),
        ev(NPU, 0, "comp1", 3.5, 5.5, task="comp1", **co),
        ev(NPU, 0, "comp2", 5.5, 7.5, task="comp2", **co),
    )
    assert result.makespan_s == 7.5  # serial sum would be 3 + 1.5 + 6 = 10.5
    assert result.start_s["comp0"] == 1.5 and result.end_s["dec2"] == 3.5


def test_priority_serves_the_earliest_layer_first(p: DeviceProfile) -> None:
    # the flash is busy; restore work for layers 2, 1, 0 queues (in that request order) and
    # is served by priority = layer index; equal priorities keep request order
    tasks = [Task("busy", FLASH, 1.0),
             Task("load2", FLASH, 1.0, priority=2),
             Task("load1", FLASH, 1.0, priority=1),
             Task("load0", FLASH, 1.0, priority=0),
             Task("load0b", FLASH, 0.5, priority=0)]
    log = run_dag(DeviceSim(p), tasks).log
    assert [(e.label, e.start_s, e.end_s) for e in log] == [
        ("busy", 0.0, 1.0), ("load0", 1.0, 2.0), ("load0b", 2.0, 2.5),
        ("load1", 2.5, 3.5), ("load2", 3.5, 4.5)]


def test_capacity_one_resource_serializes(p: DeviceProfile) -> None:
    tasks = [Task("a", NPU, 1.0), Task("b", NPU, 1.0), Task("c", NPU, 0.5)]
    result = run_dag(DeviceSim(p), tasks)
    assert result.log == (ev(NPU, 0, "a", 0.0, 1.0, task="a"),
                          ev(NPU, 0, "b", 1.0, 2.0, task="b"),
                          ev(NPU, 0, "c", 2.0, 2.5, task="c"))
    assert result.makespan_s == 2.5


def test_cpu_has_big_cores_units(p: DeviceProfile) -> None:
    tasks = [Task(f"t{i}", CPU, 1.0) for i in range(5)]
    log = run_dag(DeviceSim(p), tasks).log
    assert [(e.unit, e.label, e.start_s, e.end_s) for e in log] == [
        (0, "t0", 0.0, 1.0), (1, "t1", 0.0, 1.0), (2, "t2", 0.0, 1.0), (3, "t3", 0.0, 1.0),
        (0, "t4", 1.0, 2.0)]


def test_shards_spread_over_free_cores(p: DeviceProfile) -> None:
    tasks = [Task("bg0", CPU, 1.0), Task("bg1", CPU, 1.0),
             Task("decrypt", CPU, 2.0, shards=4, dram_bytes=0, category="decrypt")]
    result = run_dag(DeviceSim(p), tasks)
    d = {"task": "decrypt", "category": "decrypt"}
    assert result.log == (
        ev(CPU, 2, "decrypt", 0.0, 0.5, shard=0, **d),
        ev(CPU, 3, "decrypt", 0.0, 0.5, shard=1, **d),
        ev(CPU, 0, "bg0", 0.0, 1.0, task="bg0"),  # same end time: earlier-scheduled first
        ev(CPU, 1, "bg1", 0.0, 1.0, task="bg1"),
        ev(CPU, 2, "decrypt", 0.5, 1.0, shard=2, **d),
        ev(CPU, 3, "decrypt", 0.5, 1.0, shard=3, **d),
    )
    assert result.start_s["decrypt"] == 0.0 and result.end_s["decrypt"] == 1.0


def test_dram_bandwidth_is_reserved_first_come(p10: DeviceProfile) -> None:
    tasks = [Task("npu_heavy", NPU, 1.0, dram_bytes=7_500_000_000),
             Task("cpu_heavy", CPU, 1.0, dram_bytes=7_500_000_000),
             Task("next", NPU, 1.0, ("npu_heavy",), dram_bytes=5_000_000_000)]
    result = run_dag(DeviceSim(p10), tasks)
    assert result.log == (
        ev(NPU, 0, "npu_heavy", 0.0, 1.0, task="npu_heavy"),
        ev(NPU, 0, "next", 1.0, 2.0, task="next"),
        ev(CPU, 0, "cpu_heavy", 0.0, 3.0, task="cpu_heavy",
           dram_granted_bytes_per_s=2_500_000_000, dram_stretch=3.0),
    )
    uncontended = run_dag(DeviceSim(p10, dram_contention=False), tasks)
    assert uncontended.makespan_s == 2.0
    assert [e.end_s for e in uncontended.log] == [1.0, 1.0, 2.0]


def test_dram_waits_when_the_bus_is_fully_reserved(p10: DeviceProfile) -> None:
    tasks = [Task("hog", NPU, 2.0, dram_bytes=20_000_000_000),      # wants 1e10: all of it
             Task("copy", CPU, 1.0, dram_bytes=1_000_000_000)]      # waits for the bus
    log = run_dag(DeviceSim(p10), tasks).log
    assert [(e.label, e.start_s, e.end_s) for e in log] == [("hog", 0.0, 2.0),
                                                             ("copy", 0.0, 3.0)]


def test_same_input_same_log(p: DeviceProfile) -> None:
    tasks = [*pipeline(4), Task("bg", CPU, 0.75, shards=3, dram_bytes=10**9, priority=5)]
    first = run_dag(DeviceSim(p), tasks)
    second = run_dag(DeviceSim(p), tasks)
    assert first == second


def test_second_dag_on_the_same_sim_is_relative(p: DeviceProfile) -> None:
    sim = DeviceSim(p)
    run_dag(sim, [Task("a", NPU, 1.0)])
    result = run_dag(sim, [Task("b", NPU, 0.5)])
    assert result.makespan_s == 0.5
    assert result.log == (ev(NPU, 0, "b", 1.0, 1.5, task="b"),)
    assert len(sim.log) == 2


def test_hold_in_hand_written_processes(p: DeviceProfile) -> None:
    sim = DeviceSim(p, extra_resources={"little": 4})

    def worker() -> Generator[Any, Any, None]:
        yield from sim.hold("little", 0.25, "kswapd", attrs={"category": "alloc"})
        yield from sim.hold(FLASH, 0.5, "load:blk.0", priority=3)

    sim.process(worker())
    sim.run()
    assert sim.log == [ev("little", 0, "kswapd", 0.0, 0.25, category="alloc"),
                       ev(FLASH, 0, "load:blk.0", 0.25, 0.75)]
    assert sim.capacities == {FLASH: 1, CPU: 4, NPU: 1, "little": 4}
    assert sim.now_s == 0.75


@pytest.mark.parametrize(("tasks", "message"), [
    ([Task("a", "gpu", 1.0)], "unknown resource"),
    ([Task("a", CPU, 1.0), Task("a", CPU, 1.0)], "unique"),
    ([Task("a", CPU, 1.0, ("zz",))], "unknown task"),
    ([Task("a", CPU, 1.0, ("b",)), Task("b", CPU, 1.0, ("a",))], "cycle"),
    ([Task("a", CPU, -1.0)], "duration_s"),
    ([Task("a", CPU, 1.0, shards=0)], "shards"),
])
def test_bad_graphs_are_refused(p: DeviceProfile, tasks: list[Task], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_dag(DeviceSim(p), tasks)


def test_long_chains_need_no_recursion(p: DeviceProfile) -> None:
    chain = [Task("t0", NPU, 0.001)]
    chain += [Task(f"t{i}", NPU, 0.001, (f"t{i - 1}",)) for i in range(1, 3000)]
    result = run_dag(DeviceSim(p), chain)
    assert result.makespan_s == pytest.approx(3.0)
    assert len(result.log) == 3000


def test_priced_model_pipeline_is_bounded(p: DeviceProfile) -> None:
    """Costs + compute + sim together: Qwen3-0.6B, 128-token prompt, NPU prefill. The makespan
    lies between the busiest-resource bound and the serial sum, and I/O overlaps compute."""
    shape, tokens = QWEN3_0_6B, 128
    tasks: list[Task] = []
    previous: tuple[str, ...] = ()
    for i, layer in enumerate(layer_sizes(shape)):
        size, name = layer.q8_0_bytes, layer.name
        alloc = costs.flexmem_alloc_s(costs.pages_for_bytes(size, p), p).serial_s
        prefill = compute.prefill_layer_s(shape, layer, tokens, 0, compute.ComputeUnit.NPU, p)
        tasks += [
            Task(f"alloc:{name}", CPU, alloc, priority=i),
            Task(f"load:{name}", FLASH, costs.flash_read_s(size, 1, p), (f"alloc:{name}",),
                 priority=i, dram_bytes=size),
            Task(f"decrypt:{name}", CPU, costs.decrypt_s(size, p), (f"load:{name}",),
                 priority=i, shards=4, dram_bytes=costs.crypto_traffic_bytes(size)),
            Task(f"compute:{name}", NPU, prefill, (f"decrypt:{name}", *previous)),
        ]
        previous = (f"compute:{name}",)
    sim = DeviceSim(p)
    result = run_dag(sim, tasks)
    serial = sum(t.duration_s for t in tasks if t.shards == 1)
    serial += sum(t.duration_s / t.shards for t in tasks if t.shards > 1)
    bound = trace.busiest_resource_bound(result.log, sim.capacities)[1]
    assert bound <= result.makespan_s < serial
    assert sum(trace.ttft_breakdown(result.log).values()) == pytest.approx(result.makespan_s)
    first_compute = result.start_s["compute:blk.0"]
    assert first_compute < result.end_s["load:output"]  # streaming: compute before all I/O
