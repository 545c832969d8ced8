"""Normal-world OS memory model: buddy allocator, CMA, pressure and apps, Flex-Mem manager.

Phase 1 (pure normal-world memory) needs nothing from ``soc``/``monitor`` but the
``WorkRecord``; phase 2 modules (``boot``, ``flexmem``, ``tee_files``, ``npu_driver``,
``scenario``) talk to the Flex-Monitor only through ``NormalWorld`` (SMCs, CPU, DMA, flash).
See docs/normal-world.md.
"""

from flexserve.nwos.apps import App, AppStatus, AppTable
from flexserve.nwos.buddy import BuddyAllocator
from flexserve.nwos.cma import ContigAllocation, ContigRegion, ContiguityError
from flexserve.nwos.events import Event, EventKind, EventLog
from flexserve.nwos.fragmentation import unusable_free_index
from flexserve.nwos.handles import Allocation
from flexserve.nwos.kernel import KernelConfig, MemoryStats, NormalWorldKernel
from flexserve.nwos.page import (
    MAX_ORDER,
    MAX_ORDER_PAGES,
    PAGE_SIZE_BYTES,
    Area,
    PageKind,
    PageState,
    pages_for_bytes,
)
from flexserve.nwos.pressure import PressurePolicy
from flexserve.nwos.swap import SwapSpace
from flexserve.nwos.watermarks import Watermarks
from flexserve.nwos.workload import ChurnConfig, ChurnWorkload, VmKeepApp

__all__ = [
    "MAX_ORDER",
    "MAX_ORDER_PAGES",
    "PAGE_SIZE_BYTES",
    "Allocation",
    "App",
    "AppStatus",
    "AppTable",
    "Area",
    "BuddyAllocator",
    "ChurnConfig",
    "ChurnWorkload",
    "ContigAllocation",
    "ContigRegion",
    "ContiguityError",
    "Event",
    "EventKind",
    "EventLog",
    "KernelConfig",
    "MemoryStats",
    "NormalWorldKernel",
    "PageKind",
    "PageState",
    "PressurePolicy",
    "SwapSpace",
    "VmKeepApp",
    "Watermarks",
    "pages_for_bytes",
    "unusable_free_index",
]
