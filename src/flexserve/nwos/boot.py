"""Bring the normal-world kernel up on a booted platform's memory map."""

from __future__ import annotations

from dataclasses import replace

from flexserve.errors import ConfigError
from flexserve.monitor.platform import NormalWorld
from flexserve.nwos.buddy import PfnRange
from flexserve.nwos.kernel import KernelConfig, NormalWorldKernel
from flexserve.nwos.page import MAX_ORDER_PAGES


def ram_holes(ram_ranges: list[PfnRange], total_pages: int) -> tuple[PfnRange, ...]:
    """The complement of the RAM runs inside [0, total_pages): what the kernel must not use."""
    holes: list[PfnRange] = []
    cursor = 0
    for start, count in sorted(ram_ranges):
        if start > cursor:
            holes.append((cursor, start - cursor))
        cursor = max(cursor, start + count)
    if cursor < total_pages:
        holes.append((cursor, total_pages - cursor))
    return tuple(holes)


def kernel_for(normal: NormalWorld, config: KernelConfig | None = None) -> NormalWorldKernel:
    """A kernel managing the platform's normal RAM; PFNs are the OS's IPA pages.

    The managed span is DRAM rounded up to whole max-order blocks; everything the boot
    memory map does not list as RAM (TEE region, EL2 region, the rounding tail) is reserved.
    """
    dram_pages = normal.layout.dram_frames
    total = -(-dram_pages // MAX_ORDER_PAGES) * MAX_ORDER_PAGES
    base = config or KernelConfig(total_pages=total)
    holes = ram_holes(normal.ram_ranges, total)
    return NormalWorldKernel(replace(base, total_pages=total, base_pfn=0,
                                     reserved=tuple(base.reserved) + holes))


def cma_window(ram_ranges: list[PfnRange], count_pages: int) -> int:
    """Highest block-aligned start of ``count_pages`` of RAM in one run (boot reservation)."""
    for start, count in sorted(ram_ranges, reverse=True):
        end = (start + count) // MAX_ORDER_PAGES * MAX_ORDER_PAGES
        first = -(-start // MAX_ORDER_PAGES) * MAX_ORDER_PAGES
        if end - count_pages >= first:
            return end - count_pages
    raise ConfigError(f"no RAM run can hold a CMA region of {count_pages} pages")
