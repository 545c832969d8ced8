"""Property-based tests of the buddy allocator and CMA migration."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flexserve.errors import OutOfMemoryError
from flexserve.nwos.buddy import BuddyAllocator
from flexserve.nwos.page import MAX_ORDER, MAX_ORDER_PAGES, Area, PageKind, PageState

TOTAL_PAGES = 8 * MAX_ORDER_PAGES
CMA = ((4 * MAX_ORDER_PAGES, 2 * MAX_ORDER_PAGES),)


class BuddyMachine(RuleBasedStateMachine):
    """Random allocations and frees; the model is the set of pages each owner holds."""

    def __init__(self) -> None:
        super().__init__()
        self.buddy = BuddyAllocator(0, TOTAL_PAGES, reserved=[(5, 3)], cma=CMA)
        self.held: dict[int, np.ndarray] = {}
        self.next_owner = 100

    def _owner(self) -> int:
        self.next_owner += 1
        return self.next_owner

    @rule(count=st.integers(0, 3000), area=st.sampled_from(list(Area)))
    def alloc_pages(self, count: int, area: Area) -> None:
        owner = self._owner()
        if count > self.buddy.free_pages(area):
            before = self.buddy.free_pages()
            try:
                self.buddy.alloc_pages(count, PageKind.ANON, owner, area)
            except OutOfMemoryError:
                assert self.buddy.free_pages() == before
                return
            raise AssertionError("allocation beyond the free pages succeeded")
        pfns = self.buddy.alloc_pages(count, PageKind.ANON, owner, area)
        assert pfns.size == count and np.unique(pfns).size == count
        assert np.all(self.buddy.pages.area[pfns] == area)
        self.held[owner] = pfns

    @rule(order=st.integers(0, MAX_ORDER))
    def alloc_block(self, order: int) -> None:
        owner = self._owner()
        try:
            head = self.buddy.alloc_block(order, PageKind.KERNEL, owner)
        except OutOfMemoryError:
            assert not self.buddy.free_blocks_per_order(Area.NORMAL)[order:].any()
            return
        assert head % (1 << order) == 0
        self.held[owner] = np.arange(head, head + (1 << order))

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def free_some(self, data: st.DataObject) -> None:
        owner = data.draw(st.sampled_from(sorted(self.held)))
        pfns = self.held[owner]
        cut = data.draw(st.integers(0, pfns.size))
        self.buddy.release(pfns[:cut]) if cut else None
        rest = pfns[cut:]
        if rest.size:
            self.held[owner] = rest
        else:
            del self.held[owner]

    @invariant()
    def consistent(self) -> None:
        self.buddy.check_invariants()
        held = np.concatenate(list(self.held.values())) if self.held else np.zeros(0, int)
        assert np.unique(held).size == held.size, "page held twice"
        pm = self.buddy.pages
        assert np.all(pm.state[held] == PageState.ALLOCATED)
        allocated = self.buddy.count_state(PageState.ALLOCATED)
        assert allocated == held.size
        assert self.buddy.free_pages() + allocated + 3 == TOTAL_PAGES

    def teardown(self) -> None:
        for pfns in self.held.values():
            self.buddy.release(pfns)
        self.buddy.check_invariants()
        counts = self.buddy.free_blocks_per_order()
        # everything coalesces back: only the blocks around the 3 reserved pages stay split
        assert counts[MAX_ORDER] == TOTAL_PAGES // MAX_ORDER_PAGES - 1


TestBuddyMachine = BuddyMachine.TestCase
TestBuddyMachine.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 700), min_size=1, max_size=12), seed=st.integers(0, 2**16))
def test_free_all_restores_max_order_blocks(sizes: list[int], seed: int) -> None:
    total_pages = 4 * MAX_ORDER_PAGES
    buddy = BuddyAllocator(0, total_pages)
    rng = np.random.default_rng(seed)
    # keep the longest prefix of requests that fits, so every allocation can succeed
    fitting = [n for n, end in zip(sizes, np.cumsum(sizes), strict=True) if end <= total_pages]
    held = [buddy.alloc_pages(n, PageKind.PAGE_CACHE, i) for i, n in enumerate(fitting)]
    pieces = np.concatenate(held)
    for chunk in np.array_split(rng.permutation(pieces), 5):
        if chunk.size:
            buddy.release(chunk)
    counts = buddy.free_blocks_per_order()
    assert counts[MAX_ORDER] == 4 and counts[:MAX_ORDER].sum() == 0
    buddy.check_invariants()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), fill=st.floats(0.1, 0.7))
def test_cma_migration_preserves_page_identity(seed: int, fill: float) -> None:
    from flexserve.nwos.cma import ContigRegion
    from flexserve.nwos.kernel import KernelConfig, NormalWorldKernel
    from flexserve.nwos.watermarks import Watermarks

    total = 16 * MAX_ORDER_PAGES
    kernel = NormalWorldKernel(KernelConfig(total_pages=total, cma=((8 * MAX_ORDER_PAGES,
                                            4 * MAX_ORDER_PAGES),), watermarks=Watermarks(0, 0, 0)))
    rng = np.random.default_rng(seed)
    app = kernel.spawn_app("a")
    pfns = kernel.alloc(app.app_id, PageKind.ANON, int(fill * total))
    kernel.free(rng.choice(pfns, size=pfns.size // 3, replace=False))
    pm = kernel.buddy.pages
    live = pm.state == PageState.ALLOCATED
    before = dict(zip(zip(pm.owner[live].tolist(), pm.vpn[live].tolist(), strict=True),
                      pm.content[live].tolist(), strict=True))
    region = ContigRegion(kernel, 8 * MAX_ORDER_PAGES, 4 * MAX_ORDER_PAGES)
    in_window = int(np.count_nonzero(live[8 * MAX_ORDER_PAGES:12 * MAX_ORDER_PAGES]))
    got = region.alloc(3 * MAX_ORDER_PAGES)
    assert got.migrated_pages <= in_window
    assert got.work.pages_migrated == got.migrated_pages
    assert got.work.bytes_copied == got.migrated_pages * 4096
    window = slice(got.start_pfn, got.start_pfn + got.count_pages)
    assert np.all(pm.kind[window] == PageKind.CONTIG)
    moved = (pm.state == PageState.ALLOCATED) & (pm.kind == PageKind.ANON)
    after = dict(zip(zip(pm.owner[moved].tolist(), pm.vpn[moved].tolist(), strict=True),
                     pm.content[moved].tolist(), strict=True))
    assert after == before  # every movable page kept its identity and content checksum
    kernel.buddy.check_invariants()
