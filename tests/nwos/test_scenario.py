"""The 8 GiB Flex-Mem vs CMA scenario: small scale by default, full scale as a benchmark."""

from __future__ import annotations

import pytest

from flexserve.nwos.scenario import ScenarioConfig, describe, run_cma, run_flexmem
from flexserve.soc.constants import GIB, MIB


def _check(config: ScenarioConfig) -> tuple[float, float]:
    flex = run_flexmem(config)
    cma = run_cma(config)
    secure_pages = config.secure_bytes // 4096
    assert flex.pages == cma.pages == secure_pages
    # Flex-Mem: no contiguity, no migration; the monitor protected every page in one SMC
    assert flex.runs > 1 and not flex.contiguous and flex.migrated_pages == 0
    assert flex.work.pages_migrated == 0 and flex.work.bytes_copied == 0
    assert flex.work.s2pt_entries_changed == secure_pages and flex.work.smc_calls == 1
    assert flex.unusable_index_max_order > 0.2  # the background really fragmented memory
    # CMA: contiguous, paid for by migrating the movable tenants out
    assert cma.runs == 1 and cma.contiguous and cma.migrated_pages > 0
    assert cma.work.bytes_copied == cma.migrated_pages * 4096
    assert cma.events.get("migrate") == cma.migrated_pages
    print(describe(flex), f"in {flex.runs} runs")
    print(describe(cma))
    return flex.host_seconds, cma.host_seconds


def test_secure_alloc_small_scale() -> None:
    _check(ScenarioConfig(dram_bytes=512 * MIB, secure_bytes=256 * MIB))


def test_contiguous_runs_counts_breaks_in_any_order() -> None:
    import numpy as np

    from flexserve.nwos.scenario import contiguous_runs

    assert contiguous_runs(np.array([], dtype=np.int64)) == 0
    assert contiguous_runs(np.array([7, 5, 6])) == 1
    assert contiguous_runs(np.array([1, 2, 4, 9, 10, 3])) == 2


def test_same_seed_same_outcome() -> None:
    config = ScenarioConfig(dram_bytes=256 * MIB, secure_bytes=128 * MIB)
    a, b = run_cma(config), run_cma(config)
    assert (a.migrated_pages, a.events, a.work) == (b.migrated_pages, b.events, b.work)


@pytest.mark.benchmark
def test_8gib_flexmem_vs_cma_on_16gib_device() -> None:
    flex_s, cma_s = _check(ScenarioConfig(dram_bytes=16 * GIB, secure_bytes=8 * GIB))
    assert flex_s < 5.0 and cma_s < 30.0  # host seconds, generous bounds for a shared host
