"""Background pressure rises and falls: the cache gives memory back, then regrows."""

from __future__ import annotations

import pytest

from flexserve.bench.pressure import run_pressure
from flexserve.tee.sealing import ModelStore, SecureDevice
from flexserve.timing.profile import load_profile


@pytest.fixture(scope="module")
def steps(tmp_path_factory, smollm2_path, gemma3_path, one_torch_thread):
    root = tmp_path_factory.mktemp("pressure")
    store = ModelStore(root / "store", SecureDevice.load_or_create(root / "secure"))
    return run_pressure(load_profile("rk3588"), store, levels=(0.0, 0.7, 0.0, 0.0, 0.0),
                        max_tokens=1)


def test_pressure_is_met_by_rsmem_reclaim_and_costs_ttft(steps) -> None:
    calm, squeezed = steps[:2]
    assert calm.secure_reclaimed_mib == 0 and calm.resident_mib > 300
    assert squeezed.app_mib > 600 and squeezed.secure_reclaimed_mib > 0
    assert squeezed.cap_mib < calm.cap_mib  # re-planned for the smaller budget
    assert all(squeezed.ttft_s[m] > calm.ttft_s[m] for m in calm.ttft_s)


def test_the_cache_regrows_only_after_a_quiet_spell(steps) -> None:
    calm, squeezed, just_after, _, later = steps
    assert just_after.app_mib == 0
    assert just_after.cap_mib == squeezed.cap_mib  # hysteresis: no regrowth at once
    assert squeezed.cap_mib < later.cap_mib <= calm.cap_mib
