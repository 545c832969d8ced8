"""The normal-world reclaim costs the device profile lacks, with their sources.

:func:`flexserve.timing.costs.price` refuses to price ``pages_reclaimed`` and flash writes
without a :class:`~flexserve.timing.costs.ProfileGaps`; the pressure figures pass this one.
Every value is an engineering estimate (no RK3588 measurement found), written here with its
reasoning, as profiles/README.md asks of profile entries. Changing them moves the pressure
figures' absolute values, not which mechanism reclaims what.
"""

from __future__ import annotations

from flexserve.timing.costs import ProfileGaps
from flexserve.timing.profile import DeviceProfile

#: One reclaimed page (clean page-cache drop, or the CPU side of a swap-out): LRU isolation,
#: reverse-map walk and PTE clear, mapping/radix-tree removal and the free. Estimate: about
#: 1,200 cycles at 2.4 GHz, i.e. 5x the profile's per-page buddy allocation (1e-7 s), since
#: it does an allocation-sized free plus an unmap like the first half of a migration.
RECLAIM_PER_PAGE_S = 5.0e-7
RECLAIM_SOURCE = "engineering estimate (no RK3588 reclaim timing found): ~1,200 cycles/page"

#: One flash write request (a swap-out batch): set equal to the profile's read latency.
FLASH_WRITE_LATENCY_SOURCE = "engineering estimate: flash.read_latency_s reused for writes"

SOURCES = {
    "reclaim_per_page_s": RECLAIM_SOURCE,
    "flash_write_latency_s": FLASH_WRITE_LATENCY_SOURCE,
    "aes_gcm_encrypt_bytes_per_s_per_core": "unused here (no KV write-back in these figures); "
                                            "cpu.aes_gcm_decrypt_bytes_per_s_per_core reused",
    "smmu_entry_update_s": "unused here (the kernel records no SMMU changes); "
                           "memory.s2pt_update_per_entry_s reused",
}


def reclaim_gaps(profile: DeviceProfile) -> ProfileGaps:
    """The gaps for pricing reclaim and swap work on ``profile``."""
    return ProfileGaps(
        flash_write_latency_s=profile.flash.read_latency_s,
        aes_gcm_encrypt_bytes_per_s_per_core=profile.cpu.aes_gcm_decrypt_bytes_per_s_per_core,
        smmu_entry_update_s=profile.memory.s2pt_update_per_entry_s,
        reclaim_per_page_s=RECLAIM_PER_PAGE_S,
    )
