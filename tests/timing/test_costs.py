"""Cost functions: hand-computed prices from the RK3588 profile, the calibrated aggregates
reproduce their measurements, and no count is priced twice."""

from __future__ import annotations

import pytest

from flexserve.errors import ConfigError
from flexserve.soc.work import WorkRecord
from flexserve.timing import costs
from flexserve.timing.costs import Basis, ProfileGaps, ResourceTimes, price
from flexserve.timing.profile import DeviceProfile, load_profile

MIB = 2**20
GIB_8_PAGES = 8 * 2**30 // 4096  # 2,097,152
TZLLM_PARAM_BYTES = 8137 * MIB
GAPS = ProfileGaps(flash_write_latency_s=1e-4, aes_gcm_encrypt_bytes_per_s_per_core=1.5e9,
                   smmu_entry_update_s=1e-7, reclaim_per_page_s=1e-6)


@pytest.fixture(scope="module")
def p() -> DeviceProfile:
    return load_profile("rk3588")


# --- the calibrated component measurements --------------------------------------------------

def test_flexmem_8gib_equals_flexserve_fig1(p: DeviceProfile) -> None:
    t = costs.flexmem_alloc_s(GIB_8_PAGES, p)
    assert t.cpu_s == pytest.approx(GIB_8_PAGES * 1.0e-7)
    assert t.monitor_s == pytest.approx(GIB_8_PAGES * 1.7084e-7)
    assert t.serial_s == pytest.approx(0.568, rel=1e-4)


def test_cma_8gib_fully_occupied_equals_flexserve_fig1(p: DeviceProfile) -> None:
    assert costs.cma_alloc_s(GIB_8_PAGES, GIB_8_PAGES, p) == pytest.approx(6.441, rel=1e-4)
    # parallel threads: capped by the measured 4-thread gain (2.0)
    assert costs.cma_alloc_s(GIB_8_PAGES, GIB_8_PAGES, p, threads=4) == pytest.approx(
        6.441 / 2, rel=1e-4)
    assert costs.cma_speedup(1, p) == 1.0 and costs.cma_speedup(8, p) == 2.0
    # free CMA pages cost what a buddy allocation costs
    assert costs.cma_alloc_s(GIB_8_PAGES, 0, p) == pytest.approx(GIB_8_PAGES * 1e-7)


def test_flash_read_equals_tzllm_param_load(p: DeviceProfile) -> None:
    # TZ-LLM Fig. 1: 8137 MiB loaded in 4054 ms; one request adds the 100 us latency
    assert costs.flash_read_s(TZLLM_PARAM_BYTES, 0, p) == pytest.approx(4.054, rel=1e-4)
    assert costs.flash_read_s(4096, 3, p) == pytest.approx(4096 / 2.1047e9 + 3e-4)


def test_decrypt_8137mib_on_4_cores(p: DeviceProfile) -> None:
    # GCM at 1.686e9 B/s/core: 8137 MiB over 4 cores = 1.265 s (TZ-LLM's CBC took 0.892 s)
    expected = TZLLM_PARAM_BYTES / (4 * 1.686e9)
    assert costs.decrypt_s(TZLLM_PARAM_BYTES, p, cores=4) == pytest.approx(expected)
    assert expected == pytest.approx(1.26516, rel=1e-5)
    assert costs.decrypt_s(TZLLM_PARAM_BYTES, p, cores=1) == pytest.approx(4 * expected)


def test_per_unit_prices(p: DeviceProfile) -> None:
    assert costs.hash_s(1_536_000_000, p) == pytest.approx(1.0)
    assert costs.hash_s(1_536_000_000, p, cores=2) == pytest.approx(0.5)
    assert costs.zero_s(15_066_400_000, p) == pytest.approx(1.0)
    assert costs.copy_s(10_189_000_000, p) == pytest.approx(1.0)
    assert costs.smc_s(10, p) == pytest.approx(2e-5)
    assert costs.world_switch_s(4, p) == pytest.approx(2e-5)
    assert costs.s2pt_update_s(1000, p) == pytest.approx(5e-5)
    assert costs.tlb_invalidate_s(3, p) == pytest.approx(3e-6)
    assert costs.npu_mode_switch_s(2, p) == pytest.approx(1e-4)
    assert costs.npu_job_launch_s(5, p) == pytest.approx(5e-4)
    assert costs.npu_reinit_s(1, p) == pytest.approx(0.032)
    assert costs.tzasc_config_s(2, p) == pytest.approx(1e-5)
    assert costs.buddy_free_s(10, p) == pytest.approx(1e-6)
    assert costs.dram_s(20_378_000_000, p) == pytest.approx(1.0)
    assert costs.pages_for_bytes(4097, p) == 2
    assert costs.flash_write_s(10**9, 2, p, GAPS) == pytest.approx(1.0 + 2e-4)
    assert costs.encrypt_s(3 * 10**9, GAPS, cores=2) == pytest.approx(1.0)


def test_flexmem_reclaim(p: DeviceProfile) -> None:
    t = costs.flexmem_reclaim_s(100, 40, p)
    assert t.cpu_s == pytest.approx(100 * 1e-7)
    assert t.monitor_s == pytest.approx(40 * 2.7186e-7 + 100 * 1.7084e-7)


def test_framework_start_is_tzllm_fig1_sum(p: DeviceProfile) -> None:
    # 59.38 + 447.1 + 1799 + 32.89 ms
    assert costs.framework_start_s(p) == pytest.approx(2.33837)
    assert costs.framework_start_s(p, from_checkpoint=True) == pytest.approx(0.53937)


def test_negative_counts_and_cores_are_refused(p: DeviceProfile) -> None:
    with pytest.raises(ConfigError):
        costs.flash_read_s(-1, 0, p)
    with pytest.raises(ConfigError):
        costs.decrypt_s(10, p, cores=0)
    with pytest.raises(ConfigError):
        ProfileGaps(-1.0, 1.0, 1.0, 1.0)


# --- price(): whole records ---------------------------------------------------------------

def test_price_components_every_count(p: DeviceProfile) -> None:
    work = WorkRecord(frames_touched=99, bytes_copied=10_189, bytes_zeroed=150_664,
                      bytes_read_flash=2_104_700, bytes_dma=2_104_700, pages_allocated=3,
                      pages_freed=2, s2pt_entries_changed=4, tlb_invalidations=2,
                      world_switches=2, smc_calls=1, npu_mode_switches=1, npu_jobs=2,
                      bytes_hashed=1_536)
    t = price(work, p)
    assert t.flash_s == pytest.approx(1e-3 + 1e-4)
    assert t.cpu_s == pytest.approx(3e-7 + 2e-7 + 1e-6 + 1e-5)
    assert t.crypto_s == pytest.approx(1e-6)
    assert t.monitor_s == pytest.approx(2e-6 + 10e-6 + 4 * 5e-8 + 2e-6 + 5e-5)
    assert t.npu_s == pytest.approx(2e-4)
    traffic = 2 * 10_189 + 150_664 + 2_104_700 + 1_536
    assert t.dram_s == pytest.approx(traffic / 2.0378e10)
    assert t.serial_s == pytest.approx(t.flash_s + t.cpu_s + t.crypto_s + t.monitor_s + t.npu_s)


def test_price_flexmem_protect_does_not_double_count(p: DeviceProfile) -> None:
    # what FLEXMEM_PROTECT returns for 8 GiB (monitor) and the SMC around it (dispatch)
    protect = WorkRecord(frames_touched=GIB_8_PAGES, s2pt_entries_changed=GIB_8_PAGES,
                         tlb_invalidations=2, smc_calls=1, world_switches=2)
    kernel = WorkRecord(pages_allocated=GIB_8_PAGES)  # the manager's buddy allocation
    t = price(protect, p, basis=Basis.FLEXMEM_PROTECT) + price(kernel, p)
    call = 2e-6 + 2 * 5e-6  # the SMC and its world switches, once per call
    assert t.monitor_s == pytest.approx(GIB_8_PAGES * 1.7084e-7 + call)
    assert t.serial_s == pytest.approx(0.568 + call, rel=1e-4)
    # priced from components the same record would add S2PT and TLB work on top
    assert price(protect, p).monitor_s > t.monitor_s - GIB_8_PAGES * 1.7084e-7


def test_price_flexmem_release_keeps_scrub(p: DeviceProfile) -> None:
    ret = WorkRecord(frames_touched=10, bytes_zeroed=10 * 4096, s2pt_entries_changed=10)
    t = price(ret, p, basis=Basis.FLEXMEM_RELEASE)
    assert t.monitor_s == pytest.approx(10 * 1.7084e-7)
    assert t.cpu_s == pytest.approx(10 * 4096 / 1.50664e10)


def test_price_cma_record(p: DeviceProfile) -> None:
    # a CMA window of 1024 pages, 300 of them migrated: kernel.work counts the window claim
    # (1024) plus the 300 migration targets as allocations, and the copies
    work = WorkRecord(pages_allocated=1024 + 300, pages_migrated=300, bytes_copied=300 * 4096)
    t = price(work, p, basis=Basis.CMA_ALLOC)
    assert t.cpu_s == pytest.approx(1024 * 1e-7 + 300 * 2.9713e-6)
    assert t.dram_s == pytest.approx(2 * 300 * 4096 / 2.0378e10)  # traffic is still real
    # component pricing also keeps the migration copy inside cma_migrate_per_page_s
    t2 = price(work, p)
    assert t2.cpu_s == pytest.approx(1324 * 1e-7 + 300 * 2.9713e-6)


def test_price_npu_switch_uses_the_aggregate(p: DeviceProfile) -> None:
    switch = WorkRecord(npu_mode_switches=1, bytes_zeroed=1 << 20, s2pt_entries_changed=40,
                        smmu_entries_changed=1, world_switches=2, smc_calls=1,
                        tlb_invalidations=3)
    t = price(switch, p, basis=Basis.NPU_SWITCH)
    assert t == ResourceTimes(monitor_s=5e-5)


def test_price_needs_gaps_for_counts_the_profile_cannot_price(p: DeviceProfile) -> None:
    for work in (WorkRecord(pages_reclaimed=1), WorkRecord(smmu_entries_changed=1),
                 WorkRecord(bytes_written_flash=4096, pages_swapped_out=1)):
        with pytest.raises(ConfigError, match="ProfileGaps"):
            price(work, p)
    t = price(WorkRecord(pages_reclaimed=10, bytes_written_flash=10**9), p, gaps=GAPS,
              flash_write_requests=4)
    assert t.cpu_s == pytest.approx(10 * 1e-6)
    assert t.flash_s == pytest.approx(1.0 + 4e-4)


def test_flash_requests_override(p: DeviceProfile) -> None:
    work = WorkRecord(bytes_read_flash=2_104_700)
    assert price(work, p, flash_read_requests=10).flash_s == pytest.approx(1e-3 + 1e-3)
    assert price(WorkRecord(), p) == ResourceTimes()


def test_resource_times_add_and_nonzero() -> None:
    a = ResourceTimes(cpu_s=1.0, flash_s=2.0)
    b = ResourceTimes(cpu_s=0.5, npu_s=1.0, dram_s=9.0)
    s = a + b
    assert s == ResourceTimes(flash_s=2.0, cpu_s=1.5, npu_s=1.0, dram_s=9.0)
    assert s.nonzero() == {"flash_s": 2.0, "cpu_s": 1.5, "npu_s": 1.0, "dram_s": 9.0}
    assert s.serial_s == 4.5 and s.core_s == 1.5
    assert s.by_resource() == {"flash": 2.0, "cpu": 1.5, "npu": 1.0}
