"""Seeded memory-pressure scenarios: the event log of reclaim, swap and kill."""

from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import OutOfMemoryError
from flexserve.nwos.apps import AppStatus
from flexserve.nwos.events import EventKind
from flexserve.nwos.kernel import KernelConfig, NormalWorldKernel
from flexserve.nwos.owners import FLEXMEM_OWNER
from flexserve.nwos.page import MAX_ORDER_PAGES, PAGE_SIZE_BYTES, PageKind
from flexserve.nwos.pressure import PressurePolicy
from flexserve.nwos.watermarks import Watermarks
from flexserve.nwos.workload import VmKeepApp

MIB = 1 << 20
TOTAL_PAGES = 64 * MAX_ORDER_PAGES  # 256 MiB
WM = Watermarks(256, 512, 1024)


def _kernel(swap_pages: int, **kw: object) -> NormalWorldKernel:
    return NormalWorldKernel(KernelConfig(total_pages=TOTAL_PAGES, swap_pages=swap_pages,
                                          watermarks=WM, **kw))  # type: ignore[arg-type]


def _busy(kernel: NormalWorldKernel) -> dict[str, VmKeepApp]:
    """A reader filling page cache and three --vm-keep apps at different levels/priorities."""
    reader = kernel.spawn_app("reader", oom_score_adj=0)
    kernel.alloc(reader.app_id, PageKind.PAGE_CACHE, 40 * MIB // PAGE_SIZE_BYTES)
    apps = {
        "system": VmKeepApp.start(kernel, "system", 48 * MIB, oom_score_adj=-900),
        "foreground": VmKeepApp.start(kernel, "foreground", 64 * MIB, oom_score_adj=0),
        "cached": VmKeepApp.start(kernel, "cached", 64 * MIB, oom_score_adj=900),
    }
    apps["foreground"].touch()
    apps["system"].touch()
    return apps


def test_watermarks_follow_linux_sizing() -> None:
    wm = Watermarks.for_memory(4 << 20)  # 16 GiB
    assert wm.min_pages == 16384 * 1024 // PAGE_SIZE_BYTES  # sqrt(16 * 16 GiB in KiB) KiB
    assert wm.min_pages < wm.low_pages < wm.high_pages


def test_no_pressure_no_events() -> None:
    kernel = _kernel(swap_pages=0)
    _busy(kernel)
    assert kernel.events.kinds() == []


def test_pressure_drops_cache_then_swaps_then_kills() -> None:
    kernel = _kernel(swap_pages=8 * MIB // PAGE_SIZE_BYTES)
    apps = _busy(kernel)
    free_before = kernel.buddy.free_pages()
    demand = free_before + 70 * MIB // PAGE_SIZE_BYTES  # more than cache + swap can give
    kernel.alloc(FLEXMEM_OWNER, PageKind.FLEXMEM, demand)
    log = [(e.kind, e.pages, e.subject) for e in kernel.events.events]
    assert log == [
        (EventKind.PRESSURE, demand, ""),
        (EventKind.DROP_CACHE, 10240, ""),   # all 40 MiB of page cache
        (EventKind.SWAP_OUT, 2048, ""),      # swap full after 8 MiB
        (EventKind.KILL, 14336, "cached"),   # 64 MiB - 8 MiB swapped, oom_score_adj 900
    ]
    kinds = kernel.events.kinds()
    assert kinds[0] == EventKind.PRESSURE
    first = {k: kinds.index(k) for k in (EventKind.DROP_CACHE, EventKind.SWAP_OUT,
                                         EventKind.KILL)}
    assert first[EventKind.DROP_CACHE] < first[EventKind.SWAP_OUT] < first[EventKind.KILL]
    kills = kernel.events.of_kind(EventKind.KILL)
    assert [e.subject for e in kills] == ["cached"]  # the lowest-priority app only
    assert apps["cached"].app.status == AppStatus.KILLED
    assert apps["system"].app.alive and apps["foreground"].app.alive
    assert kernel.events.total_pages(EventKind.DROP_CACHE) == 40 * MIB // PAGE_SIZE_BYTES
    assert kernel.events.total_pages(EventKind.SWAP_OUT) == 8 * MIB // PAGE_SIZE_BYTES
    assert kernel.work.pages_swapped_out == 8 * MIB // PAGE_SIZE_BYTES
    assert kernel.work.bytes_written_flash == 8 * MIB
    assert kernel.buddy.free_pages() >= WM.min_pages
    # swap took the least recently used anonymous pages: the untouched "cached" app's
    assert apps["cached"].app.swapped_pages == 8 * MIB // PAGE_SIZE_BYTES
    kernel.buddy.check_invariants()


def test_seeded_scenario_is_reproducible() -> None:
    def run() -> list[tuple[EventKind, int, str]]:
        kernel = _kernel(swap_pages=4 * MIB // PAGE_SIZE_BYTES)
        _busy(kernel)
        rng = np.random.default_rng(7)
        for _ in range(5):
            kernel.alloc(FLEXMEM_OWNER, PageKind.FLEXMEM, int(rng.integers(2000, 12000)))
        return [(e.kind, e.pages, e.subject) for e in kernel.events.events]

    assert run() == run()


def test_oom_when_nothing_left_to_kill() -> None:
    kernel = _kernel(swap_pages=0, pressure=PressurePolicy(kill_enabled=True))
    VmKeepApp.start(kernel, "init", 128 * MIB, oom_score_adj=-1000)
    with pytest.raises(OutOfMemoryError):
        kernel.alloc(FLEXMEM_OWNER, PageKind.FLEXMEM, TOTAL_PAGES // 2 + 1)
    assert kernel.events.kinds()[-1] == EventKind.OOM
    kernel.buddy.check_invariants()


def test_custom_reclaim_order_swaps_before_dropping_cache() -> None:
    policy = PressurePolicy(shrinker_order=("swap", "page_cache"))
    kernel = _kernel(swap_pages=TOTAL_PAGES, pressure=policy)
    _busy(kernel)
    kernel.alloc(FLEXMEM_OWNER, PageKind.FLEXMEM, kernel.buddy.free_pages())
    kinds = kernel.events.kinds()
    assert EventKind.SWAP_OUT in kinds and EventKind.DROP_CACHE not in kinds
