"""End to end: one prompt on all four systems; real text from SmolLM2, modeled device time."""

from __future__ import annotations

from pathlib import Path

import pytest

from flexserve.cli import main
from flexserve.engine.sampling import SamplingParams
from flexserve.monitor.smc_ids import FunctionId
from flexserve.soc.npu import NpuMode
from flexserve.systems.config import SYSTEMS
from flexserve.systems.runner import Prompt, run_systems
from flexserve.tee.framework.trace import StageKind
from flexserve.timing.profile import load_profile
from flexserve.timing.trace import busiest_resource_bound

GREEDY_16 = SamplingParams(temperature=0.0, seed=7, max_tokens=16)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2_path: Path, one_torch_thread):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEXSERVE_HOME", str(tmp_path_factory.mktemp("home")))
        yield {r.system.name: r for r in run_systems(
            "smollm2-135m", list(SYSTEMS.values()), load_profile("rk3588"),
            Prompt("Name three colors of the rainbow."), GREEDY_16)}


def test_all_four_systems_give_the_plaintext_engines_text(runs) -> None:
    plain = runs["nw-base"]  # NW-Base: the engine in the normal world, plaintext weights
    assert plain.device is None and plain.answer is not None and plain.answer.text
    for run in runs.values():
        assert run.answer == plain.answer
    assert runs["flexserve"].device is not None


@pytest.mark.parametrize("name", ["flexserve", "strawman-opt", "strawman"])
def test_the_secure_runs_left_nothing_behind(runs, name: str) -> None:
    device = runs[name].device
    owner = device.owner
    assert device.platform.secure.port.owned_frames(owner).size == 0
    assert device.manager.lent_pages() == 0
    assert device.platform.soc.tzasc.regions[1:] == [None] * 7
    assert device.contig is None or device.contig.lent_pages() == 0
    status = device.platform.normal.smc_checked(FunctionId.FLEXNPU_STATUS).values[0]
    assert status == NpuMode.NORMAL


def test_each_system_decrypts_into_its_own_kind_of_secure_memory(runs) -> None:
    flex = runs["flexserve"].trace.layers[0].stage(StageKind.ALLOC)
    assert flex.work["monitor"].smc_calls == 1  # one FLEXMEM_PROTECT per layer
    for name in ("strawman", "strawman-opt"):
        allocs = [layer.stage(StageKind.ALLOC) for layer in runs[name].trace.layers]
        assert all("monitor" not in a.work for a in allocs)  # no Flex-Mem at all
        assert allocs[0].work["kernel"].pages_allocated > 0  # the CMA window, claimed
    whole = [a for a in (layer.stage(StageKind.ALLOC) for layer in runs["strawman"].trace.layers)
             if a.work]
    assert len(whole) == 1  # Strawman takes its region once, for the whole model
    grown = [layer.stage(StageKind.ALLOC) for layer in runs["strawman-opt"].trace.layers]
    assert sum(1 for a in grown if "kernel" in a.work) > 1  # Strawman-OPT grows it


def test_the_trace_records_every_stage_of_every_layer(runs) -> None:
    trace = runs["flexserve"].trace
    shape = trace.shape
    assert shape is not None and len(trace.layers) == shape.n_layers + 2
    for layer in trace.layers:
        assert [s.kind for s in layer.stages] == [StageKind.ALLOC, StageKind.IO,
                                                   StageKind.DECRYPT, StageKind.COMPUTE]
        assert layer.bytes_of(StageKind.DECRYPT) == layer.plaintext_bytes
        assert layer.bytes_of(StageKind.IO) == layer.ciphertext_bytes
    assert trace.npu_mode_switches == 2 and trace.npu_jobs == shape.n_layers + 1
    assert runs["strawman"].trace.npu_mode_switches == 0
    assert trace.generated_tokens == runs["flexserve"].answer.completion_tokens


def test_modeled_times_are_consistent(runs) -> None:
    for run in runs.values():
        timing = run.timing
        assert timing.ttft_s > 0 and timing.decode_tokens_per_s > 0
        assert timing.ttft_s >= busiest_resource_bound(timing.log, timing.capacities)[1] - 1e-9
    assert runs["flexserve"].timing.ttft_s < runs["strawman"].timing.ttft_s


def test_cli_times_a_shape_only_model_on_all_systems(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FLEXSERVE_HOME", str(tmp_path / "home"))
    trace = tmp_path / "run.json"
    assert main(["run", "--model", "qwen3-0.6b", "--prompt-tokens", "64", "--compare",
                 "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    for label in ("NW-Base", "Strawman", "Strawman-OPT", "FlexServe", "TTFT"):
        assert label in out
    for name in SYSTEMS:
        assert (tmp_path / f"run.{name}.json").is_file()


def test_cli_draws_a_gantt_chart_of_one_system(tmp_path, capsys) -> None:
    chart = tmp_path / "flex.png"
    assert main(["run", "--model", "llama3.2-3b", "--prompt-tokens", "32", "--system",
                 "strawman-opt", "--gantt", str(chart)]) == 0
    assert "Strawman-OPT" in capsys.readouterr().out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_a_shape_only_model_without_a_prompt_length(capsys) -> None:
    assert main(["run", "--model", "llama3.1-8b"]) == 2
    assert "--prompt-tokens" in capsys.readouterr().err
