"""A busy normal world for the pressure figures (Fig. 1b, Fig. 7), on the real mechanisms.

A timing-only board boots the real Flex-Monitor; the normal-world kernel (nwos) then holds a
background made of unmovable kernel memory, clean page cache and ``--vm-keep`` apps
(:class:`~flexserve.nwos.workload.VmKeepApp`) holding ``app_bytes`` of anonymous memory, with
a swap area. Nothing here is random, so the same spec gives the same world. The shares are
our choices (the paper does not describe its background apps; docs/evaluation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from flexserve.errors import ConfigError
from flexserve.monitor.platform import Platform, boot_platform
from flexserve.nwos.boot import cma_window, kernel_for
from flexserve.nwos.flexmem import FlexMemManager
from flexserve.nwos.kernel import KernelConfig, NormalWorldKernel
from flexserve.nwos.owners import KERNEL_OWNER
from flexserve.nwos.page import MAX_ORDER_PAGES, PageKind, pages_for_bytes
from flexserve.nwos.workload import VmKeepApp
from flexserve.soc.board import BoardConfig
from flexserve.soc.constants import GIB, MIB
from flexserve.soc.memory import BackingMode

#: Pages per background allocation call (a big app faults its memory in over many calls).
CHUNK_PAGES = 16384


@dataclass(frozen=True)
class BackgroundSpec:
    """What the normal world holds before the secure allocation (bytes of each kind)."""

    dram_bytes: int = 16 * GIB
    kernel_bytes: int = 512 * MIB      # unmovable: slab, page tables, driver buffers
    page_cache_bytes: int = 2 * GIB    # clean file cache (app code, media): droppable
    app_bytes: int = 0                 # anonymous memory of the background apps
    apps: int = 4                      # the apps share app_bytes equally
    swap_bytes: int = 2 * GIB          # swap area (written to flash when used)

    def __post_init__(self) -> None:
        if min(self.kernel_bytes, self.page_cache_bytes, self.app_bytes, self.swap_bytes) < 0:
            raise ConfigError("background sizes must be >= 0")
        if self.apps < 1 or self.dram_bytes <= 0:
            raise ConfigError("a background needs at least one app and some DRAM")


@dataclass
class World:
    """A booted board and its busy normal-world kernel (and a CMA region, if asked for)."""

    platform: Platform
    kernel: NormalWorldKernel
    cma_start_pfn: int | None
    cma_pages: int

    def flexmem_manager(self) -> FlexMemManager:
        return FlexMemManager(self.kernel, self.platform.normal)


def cma_region_pages(secure_bytes: int) -> int:
    """A boot-time CMA region for ``secure_bytes``, in whole max-order blocks."""
    pages = pages_for_bytes(secure_bytes)
    return -(-pages // MAX_ORDER_PAGES) * MAX_ORDER_PAGES


def build(spec: BackgroundSpec, cma_bytes: int = 0) -> World:
    """Boot a board, reserve a CMA region of ``cma_bytes`` (0: none) and fill the background."""
    platform = boot_platform(BoardConfig(dram_bytes=spec.dram_bytes,
                                         backing=BackingMode.TIMING_ONLY))
    total = platform.normal.layout.dram_frames
    cma: tuple[tuple[int, int], ...] = ()
    start = None
    count = cma_region_pages(cma_bytes) if cma_bytes else 0
    if count:
        start = cma_window(platform.normal.ram_ranges, count)
        cma = ((start, count),)
    kernel = kernel_for(platform.normal, KernelConfig(
        total_pages=total, cma=cma, swap_pages=pages_for_bytes(spec.swap_bytes)))
    _fill(kernel, spec)
    return World(platform, kernel, start, count)


def _fill(kernel: NormalWorldKernel, spec: BackgroundSpec) -> None:
    """Kernel memory first, then the page cache (older), then the apps (touched last)."""
    _alloc_chunks(kernel, KERNEL_OWNER, PageKind.KERNEL, pages_for_bytes(spec.kernel_bytes))
    files = kernel.spawn_app("files", oom_score_adj=-1000)
    _alloc_chunks(kernel, files.app_id, PageKind.PAGE_CACHE,
                  pages_for_bytes(spec.page_cache_bytes))
    if not spec.app_bytes:
        return
    share = spec.app_bytes // spec.apps
    for i in range(spec.apps):
        app = VmKeepApp.start(kernel, f"bg-app-{i}", share, oom_score_adj=100 * (i + 1),
                              chunk_pages=CHUNK_PAGES)
        app.touch()


def _alloc_chunks(kernel: NormalWorldKernel, owner: int, kind: PageKind, pages: int) -> None:
    while pages > 0:
        count = min(CHUNK_PAGES, pages)
        kernel.alloc(owner, kind, count)
        pages -= count
