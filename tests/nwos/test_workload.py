"""The background workloads: seeded, fragmenting, and --vm-keep apps holding memory."""

from __future__ import annotations

import numpy as np

from flexserve.nwos import (
    MAX_ORDER,
    ChurnConfig,
    ChurnWorkload,
    KernelConfig,
    NormalWorldKernel,
    PageKind,
    VmKeepApp,
    Watermarks,
    unusable_free_index,
)

TOTAL = 64 * 1024


def _churn(seed: int) -> NormalWorldKernel:
    kernel = NormalWorldKernel(KernelConfig(total_pages=TOTAL, watermarks=Watermarks(0, 0, 0)))
    churn = ChurnWorkload(kernel, np.random.default_rng(seed),
                          ChurnConfig(target_used_fraction=0.4, peak_used_fraction=0.85))
    churn.fill()
    churn.run(100)
    kernel.buddy.check_invariants()
    return kernel


def test_churn_fragments_free_memory() -> None:
    kernel = _churn(1)
    used = 1 - kernel.buddy.free_pages() / TOTAL
    assert 0.3 < used < 0.7
    blocks = kernel.buddy.free_blocks_per_order()
    assert unusable_free_index(blocks, MAX_ORDER) > 0.3
    assert blocks[:4].sum() > 100  # many small free holes
    stats = kernel.stats()
    assert stats.free_pages + sum(stats.used_pages.values()) + stats.reserved_pages \
        + stats.isolated_pages == stats.total_pages
    kinds = np.bincount(kernel.buddy.pages.kind, minlength=len(PageKind))
    assert kinds[PageKind.ANON] and kinds[PageKind.PAGE_CACHE] and kinds[PageKind.KERNEL]


def test_churn_is_deterministic_per_seed() -> None:
    a, b, c = _churn(5), _churn(5), _churn(6)
    assert np.array_equal(a.buddy.pages.owner, b.buddy.pages.owner)
    assert not np.array_equal(a.buddy.pages.owner, c.buddy.pages.owner)


def test_vm_keep_holds_its_level_and_stays_hot() -> None:
    kernel = NormalWorldKernel(KernelConfig(total_pages=TOTAL, watermarks=Watermarks(0, 0, 0)))
    keeper = VmKeepApp.start(kernel, "vm", 32 << 20)
    assert keeper.resident_bytes == 32 << 20
    cold = VmKeepApp.start(kernel, "cold", 8 << 20)
    keeper.touch()
    pm = kernel.buddy.pages
    assert pm.stamp[pm.owner == keeper.app.app_id].min() > pm.stamp[
        pm.owner == cold.app.app_id].max()
