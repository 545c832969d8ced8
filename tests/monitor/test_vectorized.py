"""Protect/release are vectorized over frame arrays: cost grows with numpy, not Python.

The benchmark protects 2 Mi frames (8 GiB) on a 16 GiB timing-only device; it is
excluded from the default run (``pytest -m benchmark tests/monitor/test_vectorized.py``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from flexserve.monitor.audit import audit
from flexserve.monitor.platform import boot_platform
from flexserve.soc.board import BoardConfig
from flexserve.soc.constants import GIB, MIB
from flexserve.soc.memory import BackingMode


def _protect_release(platform, frame_count: int) -> tuple[float, float]:
    first = platform.soc.layout.el2_base_frame + platform.monitor.ctx.region.frame_count
    pages = np.arange(first, first + frame_count, dtype=np.int64)
    started = time.perf_counter()
    record = platform.normal.flexmem_protect(1, pages)
    protect_s = time.perf_counter() - started
    assert record.s2pt_entries_changed == frame_count
    assert audit(platform.monitor) == []
    port = platform.secure.port
    frames = port.owned_frames(1)
    assert frames.size == frame_count
    port.map_frames(1, frames)
    port.mark_written(1, frames)  # the TA filled them (timing-only: metadata)
    port.unmap_frames(1, frames)
    started = time.perf_counter()
    record = platform.normal.flexmem_release(1, pages)
    release_s = time.perf_counter() - started
    assert record.bytes_zeroed == frame_count * 4096
    assert audit(platform.monitor) == []
    return protect_s, release_s


def test_protect_and_release_many_frames_timing_only():
    platform = boot_platform(BoardConfig.small(dram_bytes=256 * MIB,
                                               backing=BackingMode.TIMING_ONLY))
    protect_s, release_s = _protect_release(platform, 32 * 1024)  # 128 MiB
    assert protect_s < 2.0 and release_s < 2.0  # generous: shared CI hosts


@pytest.mark.benchmark
def test_protect_8_gib_in_well_under_a_second():
    platform = boot_platform(BoardConfig(dram_bytes=16 * GIB, backing=BackingMode.TIMING_ONLY))
    protect_s, release_s = _protect_release(platform, 2 * 1024 * 1024)
    print(f"\nprotect 8 GiB: {protect_s * 1e3:.1f} ms, release: {release_s * 1e3:.1f} ms")
    assert protect_s < 1.0
