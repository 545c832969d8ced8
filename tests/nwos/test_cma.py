"""Contiguous allocation: migration out of the window, and clean failure when blocked."""

from __future__ import annotations

import numpy as np
import pytest

from flexserve.nwos.cma import ContigRegion, ContiguityError
from flexserve.nwos.events import EventKind
from flexserve.nwos.kernel import KernelConfig, NormalWorldKernel
from flexserve.nwos.owners import KERNEL_OWNER
from flexserve.nwos.page import MAX_ORDER_PAGES, Area, PageKind, PageState
from flexserve.nwos.watermarks import Watermarks

BLOCK = MAX_ORDER_PAGES
WM = Watermarks(0, 0, 0)


def _kernel(cma_blocks: int = 8) -> NormalWorldKernel:
    return NormalWorldKernel(KernelConfig(total_pages=16 * BLOCK, watermarks=WM,
                                          cma=((8 * BLOCK, cma_blocks * BLOCK),)))


def test_movable_pages_spread_into_cma_unmovable_never() -> None:
    kernel = _kernel()
    app = kernel.spawn_app("a")
    anon = kernel.alloc(app.app_id, PageKind.ANON, 4 * BLOCK)
    kern = kernel.alloc(KERNEL_OWNER, PageKind.KERNEL, 2 * BLOCK)
    areas = kernel.buddy.pages.area
    assert np.count_nonzero(areas[anon] == Area.CMA) > 0
    assert np.all(areas[kern] == Area.NORMAL)


def test_cma_alloc_migrates_and_releases() -> None:
    kernel = _kernel()
    app = kernel.spawn_app("a")
    kernel.alloc(app.app_id, PageKind.ANON, 10 * BLOCK)
    region = ContigRegion(kernel, 8 * BLOCK, 8 * BLOCK)
    got = region.alloc(4 * BLOCK + 10)
    pm = kernel.buddy.pages
    assert got.migrated_pages > 0
    assert got.work.bytes_copied == got.migrated_pages * 4096
    assert np.all(pm.kind[got.start_pfn:got.start_pfn + got.count_pages] == PageKind.CONTIG)
    assert EventKind.MIGRATE in kernel.events.kinds()
    assert kernel.events.kinds()[-1] == EventKind.CMA_ALLOC
    kernel.buddy.check_invariants()
    region.release(got)
    kernel.buddy.check_invariants()
    assert np.count_nonzero(pm.kind == PageKind.CONTIG) == 0


def test_pinned_page_blocks_every_window_and_nothing_changes() -> None:
    kernel = _kernel(cma_blocks=2)
    app = kernel.spawn_app("a")
    pfns = kernel.alloc(app.app_id, PageKind.ANON, 12 * BLOCK)
    in_cma = pfns[kernel.buddy.pages.area[pfns] == Area.CMA]
    kernel.buddy.set_pinned(in_cma[[0, -1]])  # one pin in each CMA block
    region = ContigRegion(kernel, 8 * BLOCK, 2 * BLOCK)
    state = kernel.buddy.pages.state.copy()
    owners = kernel.buddy.pages.owner.copy()
    with pytest.raises(ContiguityError):
        region.alloc(BLOCK)
    assert np.array_equal(state, kernel.buddy.pages.state)
    assert np.array_equal(owners, kernel.buddy.pages.owner)
    assert kernel.events.kinds()[-1] == EventKind.CMA_BUSY


def test_contiguous_over_normal_memory_blocked_by_kernel_pages() -> None:
    kernel = NormalWorldKernel(KernelConfig(total_pages=4 * BLOCK, watermarks=WM))
    for _ in range(4):  # one slab page in every 4 MiB block
        kernel.alloc_block(KERNEL_OWNER, PageKind.KERNEL, 0)
        kernel.alloc(kernel.spawn_app("x").app_id, PageKind.ANON, BLOCK - 1)
    kern = np.flatnonzero(kernel.buddy.pages.kind == PageKind.KERNEL)
    assert sorted(set((kern // BLOCK).tolist())) == [0, 1, 2, 3]
    with pytest.raises(ContiguityError):
        ContigRegion(kernel, 0, 4 * BLOCK, name="normal").alloc(1)
    assert kernel.buddy.count_state(PageState.ISOLATED) == 0
