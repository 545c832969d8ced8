"""Owner ids of pages: fixed ids for kernel subsystems, apps from ``FIRST_APP_ID`` upward."""

from __future__ import annotations

KERNEL_OWNER = 0      # slab, page tables, driver buffers
FLEXMEM_OWNER = 1     # pages lent to the secure world through Flex-Mem
CONTIG_OWNER = 2      # contiguous (CMA) allocations
FIRST_APP_ID = 16
