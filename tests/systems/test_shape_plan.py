"""Timing-only traces equal, record for record, what the framework reports when it really runs.

The shape-only models of the paper are timed from :func:`shape_trace`; that is honest only if
the counts it writes down are the counts the mechanisms report for a real sealed model. Here
the bundled SmolLM2 runs through the framework TA and every layer's alloc, io and decrypt
stages are compared with :func:`layer_trace` for the same layer sizes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flexserve.catalog import resolve
from flexserve.engine.sampling import SamplingParams
from flexserve.systems.runner import Prompt, run_secure
from flexserve.systems.shape_plan import layer_trace
from flexserve.tee.framework import FrameworkOptions
from flexserve.tee.framework.trace import StageKind

RESTORE = (StageKind.ALLOC, StageKind.IO, StageKind.DECRYPT)


@pytest.fixture(scope="module")
def real_trace(tmp_path_factory, smollm2_path: Path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEXSERVE_HOME", str(tmp_path_factory.mktemp("home")))
        run = run_secure(resolve("smollm2-135m"), Prompt("Hello"),
                         SamplingParams(max_tokens=1), FrameworkOptions())
    return run.trace


def test_every_restore_stage_matches_the_timing_only_model(real_trace) -> None:
    for layer in real_trace.layers:
        model = layer_trace(layer.name, layer.index - 1, layer.plaintext_bytes,
                            layer.name != "embed")
        assert (model.index, model.ciphertext_bytes, model.chunks) == \
            (layer.index, layer.ciphertext_bytes, layer.chunks), layer.name
        for kind in RESTORE:
            real, modeled = layer.stage(kind), model.stage(kind)
            assert (real.n_bytes, real.pages, real.requests) == \
                (modeled.n_bytes, modeled.pages, modeled.requests), (layer.name, kind)
            assert dict(real.work) == dict(modeled.work), (layer.name, kind)


def test_compute_stages_count_the_same_npu_jobs(real_trace) -> None:
    for layer in real_trace.layers:
        model = layer_trace(layer.name, layer.index - 1, layer.plaintext_bytes,
                            layer.name != "embed")
        assert layer.stage(StageKind.COMPUTE).requests == \
            model.stage(StageKind.COMPUTE).requests, layer.name
