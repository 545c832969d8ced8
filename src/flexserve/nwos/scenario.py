"""Allocate a large secure region under a fragmented, busy normal world, two ways.

Flex-Mem: ordinary pages from anywhere, protected by the real Flex-Monitor in one SMC.
CMA: a contiguous region reserved at boot, whose movable tenants must be migrated out.
Both run on the same seeded background (churn to a peak and back, plus ``--vm-keep`` apps),
and both report the work done and the host time of the allocation itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from flexserve.monitor.platform import Platform, boot_platform
from flexserve.nwos.boot import cma_window, kernel_for
from flexserve.nwos.cma import ContigRegion
from flexserve.nwos.events import EventKind
from flexserve.nwos.flexmem import FlexMemManager
from flexserve.nwos.fragmentation import unusable_free_index
from flexserve.nwos.kernel import KernelConfig, NormalWorldKernel
from flexserve.nwos.page import MAX_ORDER, MAX_ORDER_PAGES, PAGE_SIZE_BYTES, pages_for_bytes
from flexserve.nwos.workdelta import since
from flexserve.nwos.workload import ChurnConfig, ChurnWorkload, VmKeepApp
from flexserve.soc.board import BoardConfig
from flexserve.soc.constants import GIB
from flexserve.soc.memory import BackingMode
from flexserve.soc.work import WorkRecord

SECURE_OWNER = 7


@dataclass(frozen=True)
class ScenarioConfig:
    dram_bytes: int = 16 * GIB
    secure_bytes: int = 8 * GIB
    seed: int = 2603
    churn: ChurnConfig = field(default_factory=lambda: ChurnConfig(
        target_used_fraction=0.35, peak_used_fraction=0.85))
    churn_events_after_fill: int = 200
    vm_keep_fractions: tuple[float, ...] = (0.05, 0.10)  # of DRAM, like --vm-bytes levels
    swap_fraction: float = 0.125


@dataclass(frozen=True)
class AllocOutcome:
    mechanism: str
    pages: int
    host_seconds: float
    migrated_pages: int
    work: WorkRecord
    events: dict[str, int]           # event kind -> pages
    unusable_index_max_order: float  # fragmentation before the allocation
    runs: int                        # maximal runs of consecutive frames the pages form

    @property
    def contiguous(self) -> bool:
        return self.runs == 1


def contiguous_runs(pages: np.ndarray) -> int:
    """How many maximal runs of consecutive frame numbers ``pages`` (any order) form."""
    if pages.size == 0:
        return 0
    ordered = np.sort(pages)
    return int(np.count_nonzero(np.diff(ordered) != 1)) + 1


def _platform(config: ScenarioConfig) -> Platform:
    return boot_platform(BoardConfig(dram_bytes=config.dram_bytes,
                                     backing=BackingMode.TIMING_ONLY))


def _busy_kernel(platform: Platform, config: ScenarioConfig,
                 cma: tuple[tuple[int, int], ...]) -> NormalWorldKernel:
    total = platform.normal.layout.dram_frames
    kernel = kernel_for(platform.normal, KernelConfig(
        total_pages=total, cma=cma, swap_pages=int(total * config.swap_fraction)))
    rng = np.random.default_rng(config.seed)
    churn = ChurnWorkload(kernel, rng, config.churn)
    churn.fill()
    churn.run(config.churn_events_after_fill)
    for i, fraction in enumerate(config.vm_keep_fractions):
        VmKeepApp.start(kernel, f"vm-keep-{i}", int(fraction * config.dram_bytes),
                        oom_score_adj=100 * (i + 1)).touch()
    return kernel


def _summary(kernel: NormalWorldKernel, first_event: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for event in kernel.events.events[first_event:]:
        out[event.kind.value] = out.get(event.kind.value, 0) + event.pages
    return out


def run_flexmem(config: ScenarioConfig) -> AllocOutcome:
    platform = _platform(config)
    kernel = _busy_kernel(platform, config, cma=())
    manager = FlexMemManager(kernel, platform.normal)
    frag = unusable_free_index(kernel.buddy.free_blocks_per_order(), MAX_ORDER)
    first, before = len(kernel.events.events), _snapshot(kernel, manager)
    start = time.perf_counter()
    ipas = manager.rsmem_alloc(SECURE_OWNER, config.secure_bytes)
    seconds = time.perf_counter() - start
    kernel.buddy.check_invariants()
    work = _snapshot(kernel, manager)
    return AllocOutcome("flexmem", int(ipas.size), seconds, 0, _diff(work, before),
                        _summary(kernel, first), frag, contiguous_runs(ipas))


def run_cma(config: ScenarioConfig) -> AllocOutcome:
    platform = _platform(config)
    count = -(-pages_for_bytes(config.secure_bytes) // MAX_ORDER_PAGES) * MAX_ORDER_PAGES
    start_pfn = cma_window(platform.normal.ram_ranges, count)
    kernel = _busy_kernel(platform, config, cma=((start_pfn, count),))
    region = ContigRegion(kernel, start_pfn, count)
    frag = unusable_free_index(kernel.buddy.free_blocks_per_order(), MAX_ORDER)
    first = len(kernel.events.events)
    start = time.perf_counter()
    got = region.alloc(pages_for_bytes(config.secure_bytes))
    seconds = time.perf_counter() - start
    kernel.buddy.check_invariants()
    return AllocOutcome("cma", got.count_pages, seconds, got.migrated_pages, got.work,
                        _summary(kernel, first), frag,
                        contiguous_runs(np.arange(got.start_pfn,
                                                  got.start_pfn + got.count_pages)))


def _snapshot(kernel: NormalWorldKernel, manager: FlexMemManager) -> WorkRecord:
    return kernel.work + manager.work


def _diff(after: WorkRecord, before: WorkRecord) -> WorkRecord:
    return since(after, before)


def describe(outcome: AllocOutcome) -> str:
    gib = outcome.pages * PAGE_SIZE_BYTES / GIB
    kinds = ", ".join(f"{k}={v}" for k, v in outcome.events.items()
                      if k != EventKind.PRESSURE.value)
    return (f"{outcome.mechanism}: {gib:.2f} GiB in {outcome.host_seconds:.3f} s host, "
            f"migrated {outcome.migrated_pages} pages, unusable-free@order{MAX_ORDER} "
            f"{outcome.unusable_index_max_order:.2f}, events [{kinds}]")
