"""The real agent workflow: SmolLM2 writes, Gemma 3 continues, on one emulated phone."""

from __future__ import annotations

import pytest

from flexserve.engine.matrix import WeightFormat
from flexserve.engine.sampling import SamplingParams
from flexserve.soc.constants import MIB
from flexserve.systems.agent import run_real
from flexserve.systems.config import FLEXSERVE
from flexserve.systems.session import DeviceSession
from flexserve.tee.sealing import ModelStore, SecureDevice
from flexserve.timing.profile import load_profile
from flexserve.workflow.builtin import QUIZ


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2_path, gemma3_path, one_torch_thread):
    root = tmp_path_factory.mktemp("agent")
    store = ModelStore(root / "store", SecureDevice.load_or_create(root / "secure"))
    with DeviceSession(FLEXSERVE, load_profile("rk3588"), store=store,
                       cache_bytes=512 * MIB, dram_bytes=1024 * MIB,
                       weight_format=WeightFormat.FLOAT32) as session:  # exact: see test_cache
        yield [run_real(QUIZ, session, SamplingParams(temperature=0.0)) for _ in range(2)]


def test_each_call_writes_real_text_from_its_dependencies(runs) -> None:
    first = runs[0]
    assert [c.name for c in first.calls] == ["qa", "fact"]
    assert [c.model for c in first.calls] == ["smollm2-135m", "gemma3-270m"]
    assert all(c.text and c.text.strip() for c in first.calls)
    assert all(0 < c.output_tokens <= call.output_tokens
               for c, call in zip(first.calls, QUIZ.order(), strict=True))


def test_the_second_invocation_runs_from_the_cache(runs) -> None:
    cold, warm = runs
    assert [c.text for c in warm.calls] == [c.text for c in cold.calls]  # greedy
    assert all(c.resident_layers > 0 for c in warm.calls)
    assert all(c.resident_layers == 0 for c in cold.calls)
    assert warm.latency_s < cold.latency_s / 2
