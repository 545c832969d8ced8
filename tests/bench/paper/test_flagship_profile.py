"""The flagship profile loads, is sourced, and is faster than the RK3588 where it should be."""

from __future__ import annotations

from flexserve.timing.profile import PROFILES_DIR, load_profile


def _npu_ops_per_s(profile) -> float:
    return profile.npu.peak_int8_ops_per_s * profile.npu.prefill_efficiency


def test_the_flagship_loads_by_path_and_name() -> None:
    by_path = load_profile(PROFILES_DIR / "sd8gen3.toml")
    assert by_path == load_profile("sd8gen3")
    assert by_path.name == "sd8gen3"


def test_it_differs_from_rk3588_in_flash_and_npu() -> None:
    flagship, rk3588 = load_profile("sd8gen3"), load_profile("rk3588")
    assert flagship.flash.read_bandwidth_bytes_per_s > rk3588.flash.read_bandwidth_bytes_per_s
    assert _npu_ops_per_s(flagship) > 2 * _npu_ops_per_s(rk3588)


def test_every_estimate_says_why() -> None:
    flagship = load_profile("sd8gen3")
    assert all(p.source for p in flagship.params())
    assert all(p.derivation for p in flagship.estimates())
