"""Stateful property test: app memory, pins and contiguous allocations interleaved.

The model is what each app's pages hold: (owner, page index) -> content checksum. Whatever
the contiguous allocator migrates, every app page must stay resident exactly once with the
same content, and the allocator's own invariants must hold after every step.
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flexserve.errors import OutOfMemoryError
from flexserve.nwos import (
    MAX_ORDER_PAGES,
    ContigRegion,
    KernelConfig,
    NormalWorldKernel,
    PageKind,
    PageState,
    Watermarks,
)
from flexserve.nwos.handles import Allocation

BLOCK = MAX_ORDER_PAGES


class ContigMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kernel = NormalWorldKernel(KernelConfig(
            total_pages=12 * BLOCK, cma=((4 * BLOCK, 6 * BLOCK),),
            watermarks=Watermarks(0, 0, 0)))
        self.region = ContigRegion(self.kernel, 4 * BLOCK, 6 * BLOCK)
        self.apps = [self.kernel.spawn_app(f"a{i}") for i in range(3)]
        self.allocs: list[Allocation] = []
        self.contig: list = []
        self.model: dict[tuple[int, int], int] = {}

    @rule(app=st.integers(0, 2), count=st.integers(1, 2 * BLOCK),
          kind=st.sampled_from([PageKind.ANON, PageKind.PAGE_CACHE]))
    def alloc(self, app: int, count: int, kind: PageKind) -> None:
        owner = self.apps[app].app_id
        try:  # no reclaim: swap-out and kills change residency (tested in test_pressure)
            pfns = self.kernel.alloc_unreclaimed(owner, kind, count)
        except OutOfMemoryError:
            return
        handle = Allocation.of(self.kernel, owner, pfns)
        self.allocs.append(handle)
        pm = self.kernel.buddy.pages
        for vpn, content in zip(handle.vpns.tolist(), pm.content[pfns].tolist(), strict=True):
            self.model[(owner, vpn)] = content

    @precondition(lambda self: self.allocs)
    @rule(i=st.integers(0, 10**6))
    def free(self, i: int) -> None:
        handle = self.allocs.pop(i % len(self.allocs))
        handle.free(self.kernel)
        for vpn in handle.vpns.tolist():
            del self.model[(handle.owner, vpn)]

    @precondition(lambda self: self.allocs)
    @rule(i=st.integers(0, 10**6))
    def pin_one(self, i: int) -> None:
        handle = self.allocs[i % len(self.allocs)]
        pfns = handle.resident_pfns(self.kernel)
        self.kernel.buddy.set_pinned(pfns[:1])

    @rule(count=st.integers(1, 3 * BLOCK))
    def contig_alloc(self, count: int) -> None:
        try:
            self.contig.append(self.region.alloc(count))
        except OutOfMemoryError:  # includes ContiguityError: must have changed nothing
            assert self.kernel.buddy.count_state(PageState.ISOLATED) == 0

    @precondition(lambda self: self.contig)
    @rule()
    def contig_release(self) -> None:
        self.region.release(self.contig.pop())

    @invariant()
    def identities_preserved(self) -> None:
        self.kernel.buddy.check_invariants()
        pm = self.kernel.buddy.pages
        user = (pm.state == PageState.ALLOCATED) & np.isin(
            pm.kind, [PageKind.ANON, PageKind.PAGE_CACHE])
        owners, vpns, contents = pm.owner[user], pm.vpn[user], pm.content[user]
        seen = dict(zip(zip(owners.tolist(), vpns.tolist(), strict=True),
                        contents.tolist(), strict=True))
        assert len(seen) == int(user.sum()), "an app page is resident twice"
        assert seen == self.model
        for got in self.contig:
            window = slice(got.start_pfn, got.start_pfn + got.count_pages)
            assert np.all(pm.kind[window] == PageKind.CONTIG)


TestContigMachine = ContigMachine.TestCase
TestContigMachine.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
