"""Pure cost functions: counted work -> seconds on each device resource.

Every function here is a pure function of its arguments and a
:class:`~flexserve.timing.profile.DeviceProfile`; each docstring names the profile parameters it
reads. :func:`price` prices a whole :class:`~flexserve.soc.work.WorkRecord`.

Results are *resource-seconds*, not wall time. ``cpu_s``, ``crypto_s`` and ``monitor_s`` are
seconds of one big core; work spread over ``n`` cores takes ``x / n`` of wall time (the
per-core functions take a ``cores`` argument and return wall time for that many cores).
``dram_s`` is occupancy of the DRAM bus (traffic / sustained bandwidth): it overlaps the CPU,
flash or NPU work that causes it and is never added to a serial total.

Aggregates are not double counted (profiles/README.md): a calibrated aggregate such as
``memory.flexmem_protect_per_page_s`` already contains its S2PT, TLB and SMC work, so
:class:`Basis` tells :func:`price` which counts of a record an aggregate covers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields

from flexserve.errors import ConfigError
from flexserve.soc.work import WorkRecord
from flexserve.timing.profile import DeviceProfile


@dataclass(frozen=True)
class ResourceTimes:
    """Seconds of work per resource class (see module docstring for the units)."""

    flash_s: float = 0.0
    cpu_s: float = 0.0
    crypto_s: float = 0.0
    monitor_s: float = 0.0
    npu_s: float = 0.0
    dram_s: float = 0.0

    def __add__(self, other: ResourceTimes) -> ResourceTimes:
        return ResourceTimes(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                                for f in fields(self)})

    @property
    def core_s(self) -> float:
        """All work that runs on CPU cores: general CPU, crypto and monitor/world switches."""
        return self.cpu_s + self.crypto_s + self.monitor_s

    @property
    def serial_s(self) -> float:
        """Time if everything ran one after another on one core (DRAM occupancy excluded)."""
        return self.flash_s + self.core_s + self.npu_s

    def by_resource(self) -> dict[str, float]:
        """Seconds per :class:`~flexserve.timing.sim.DeviceSim` resource (single-core seconds
        for ``cpu``: divide by the cores a task is sharded over). DRAM is not a lane."""
        return {"flash": self.flash_s, "cpu": self.core_s, "npu": self.npu_s}

    def nonzero(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


@dataclass(frozen=True)
class ProfileGaps:
    """Parameters the device profile does not have yet, passed explicitly (never defaulted).

    - ``flash_write_latency_s``: fixed cost per flash write request (profile has reads only).
    - ``aes_gcm_encrypt_bytes_per_s_per_core``: KV-cache encryption before write-back.
    - ``smmu_entry_update_s``: one SMMU stream-table entry update (``smmu_entries_changed``).
    - ``reclaim_per_page_s``: normal-world reclaim of one page (``pages_reclaimed``), LRU scan,
      unmap and free; swap writes are charged separately as flash writes.
    """

    flash_write_latency_s: float
    aes_gcm_encrypt_bytes_per_s_per_core: float
    smmu_entry_update_s: float
    reclaim_per_page_s: float

    def __post_init__(self) -> None:
        for f in fields(self):
            if not getattr(self, f.name) >= 0:
                raise ConfigError(f"ProfileGaps.{f.name} must be >= 0")


class Basis(enum.StrEnum):
    """Which calibrated aggregate a WorkRecord is priced with.

    - ``COMPONENTS``: every count priced from its own per-unit parameter.
    - ``FLEXMEM_PROTECT``: a FLEXMEM_PROTECT record; ``s2pt_entries_changed`` pages at
      ``memory.flexmem_protect_per_page_s``, which covers their S2PT/TLB/SMMU work.
    - ``FLEXMEM_RELEASE``: a Flex-Mem return; ``s2pt_entries_changed`` pages at
      ``memory.flexmem_unprotect_per_page_s``; scrubbing (``bytes_zeroed``) still charged.
    - ``CMA_ALLOC``: a CMA allocation's kernel work; window pages
      (``pages_allocated - pages_migrated``) at ``memory.cma_alloc_free_per_page_s`` and
      ``pages_migrated`` at ``memory.cma_migrate_per_page_s``, which covers the migration
      copies and the migration targets' allocation.
    - ``NPU_SWITCH``: a Flex-NPU mode switch; ``npu_mode_switches`` at ``npu.mode_switch_s``,
      which covers its SMC, world switches, S2PT/SMMU/TLB work and NPU scrub.
    """

    COMPONENTS = "components"
    FLEXMEM_PROTECT = "flexmem_protect"
    FLEXMEM_RELEASE = "flexmem_release"
    CMA_ALLOC = "cma_alloc"
    NPU_SWITCH = "npu_switch"


def _count(value: int | float, what: str) -> None:
    if value < 0:
        raise ConfigError(f"{what} must be >= 0, got {value}")


def _cores(cores: int) -> int:
    if cores < 1:
        raise ConfigError(f"cores must be >= 1, got {cores}")
    return cores


# --- flash ---------------------------------------------------------------------------------

def flash_read_s(size_bytes: int, requests: int, profile: DeviceProfile) -> float:
    """``flash.read_bandwidth_bytes_per_s`` and ``flash.read_latency_s`` (per request)."""
    _count(size_bytes, "size_bytes")
    _count(requests, "requests")
    flash = profile.flash
    return size_bytes / flash.read_bandwidth_bytes_per_s + requests * flash.read_latency_s


def flash_write_s(size_bytes: int, requests: int, profile: DeviceProfile,
                  gaps: ProfileGaps) -> float:
    """``flash.write_bandwidth_bytes_per_s`` and ``gaps.flash_write_latency_s`` per request."""
    _count(size_bytes, "size_bytes")
    _count(requests, "requests")
    return (size_bytes / profile.flash.write_bandwidth_bytes_per_s
            + requests * gaps.flash_write_latency_s)


# --- page management -----------------------------------------------------------------------

def pages_for_bytes(size_bytes: int, profile: DeviceProfile) -> int:
    """Pages of ``memory.page_size_bytes`` needed to hold ``size_bytes``."""
    _count(size_bytes, "size_bytes")
    return -(-size_bytes // profile.memory.page_size_bytes)


def buddy_alloc_s(pages: int, profile: DeviceProfile) -> float:
    """``memory.buddy_alloc_per_page_s`` per order-0 page."""
    _count(pages, "pages")
    return pages * profile.memory.buddy_alloc_per_page_s


def buddy_free_s(pages: int, profile: DeviceProfile) -> float:
    """``memory.buddy_free_per_page_s`` per page."""
    _count(pages, "pages")
    return pages * profile.memory.buddy_free_per_page_s


def cma_speedup(threads: int, profile: DeviceProfile) -> float:
    """Speedup of CMA allocation with ``threads`` threads: ``min(threads,
    memory.cma_parallel_speedup)`` (the measured 4-thread gain is the cap; linear below it)."""
    return min(float(_cores(threads)), profile.memory.cma_parallel_speedup)


def cma_alloc_s(pages: int, migrated_pages: int, profile: DeviceProfile,
                threads: int = 1) -> float:
    """Strawman secure-memory allocation through CMA.

    ``pages x memory.cma_alloc_free_per_page_s + migrated_pages x
    memory.cma_migrate_per_page_s``, divided by :func:`cma_speedup`. TZASC reprogramming is
    :func:`tzasc_config_s`, charged by the caller per region change.
    """
    _count(pages, "pages")
    _count(migrated_pages, "migrated_pages")
    mem = profile.memory
    serial = pages * mem.cma_alloc_free_per_page_s + migrated_pages * mem.cma_migrate_per_page_s
    return serial / cma_speedup(threads, profile)


def tzasc_config_s(region_changes: int, profile: DeviceProfile) -> float:
    """``memory.tzasc_region_config_s`` per TZASC region reprogramming."""
    _count(region_changes, "region_changes")
    return region_changes * profile.memory.tzasc_region_config_s


def flexmem_protect_s(pages: int, profile: DeviceProfile) -> float:
    """Monitor share of Flex-Mem protect: ``memory.flexmem_protect_per_page_s`` per page.

    A calibrated aggregate: contains the S2PT unmap, TLB/SMMU invalidation and TA mapping, so
    ``s2pt_update_per_entry_s`` / ``tlb_invalidate_s`` are never added on top.
    """
    _count(pages, "pages")
    return pages * profile.memory.flexmem_protect_per_page_s


def flexmem_alloc_s(pages: int, profile: DeviceProfile) -> ResourceTimes:
    """A whole ``rsmem_alloc`` of ``pages``: buddy allocation (cpu) + protect (monitor).

    ``memory.buddy_alloc_per_page_s`` + ``memory.flexmem_protect_per_page_s`` per page; their sum
    is the calibrated FlexServe Fig. 1 figure (8 GiB in 0.568 s). The call's SMC and world
    switches are charged once per call with :func:`smc_s` / :func:`world_switch_s`.
    """
    return ResourceTimes(cpu_s=buddy_alloc_s(pages, profile),
                         monitor_s=flexmem_protect_s(pages, profile))


def flexmem_unprotect_s(pages: int, profile: DeviceProfile) -> float:
    """``memory.flexmem_unprotect_per_page_s`` per page (S2PT re-insert and hand-back)."""
    _count(pages, "pages")
    return pages * profile.memory.flexmem_unprotect_per_page_s


def flexmem_reclaim_s(pages: int, zeroed_pages: int, profile: DeviceProfile) -> ResourceTimes:
    """Return ``pages`` of Flex-Mem to the OS, ``zeroed_pages`` of them scrubbed.

    ``memory.page_zero_per_page_s`` per scrubbed page and ``memory.flexmem_unprotect_per_page_s``
    per page (monitor), ``memory.buddy_free_per_page_s`` per page (cpu). KV write-back is
    :func:`encrypt_s` plus :func:`flash_write_s`.
    """
    _count(zeroed_pages, "zeroed_pages")
    scrub = zeroed_pages * profile.memory.page_zero_per_page_s
    return ResourceTimes(cpu_s=buddy_free_s(pages, profile),
                         monitor_s=scrub + flexmem_unprotect_s(pages, profile))


def zero_s(size_bytes: int, profile: DeviceProfile) -> float:
    """Zeroing (scrubbing) memory on one core: ``cpu.zero_page_bytes_per_s``."""
    _count(size_bytes, "size_bytes")
    return size_bytes / profile.cpu.zero_page_bytes_per_s


def copy_s(size_bytes: int, profile: DeviceProfile) -> float:
    """Copying memory on one core: ``dram.memcpy_bandwidth_bytes_per_s`` (bytes copied)."""
    _count(size_bytes, "size_bytes")
    return size_bytes / profile.dram.memcpy_bandwidth_bytes_per_s


def s2pt_update_s(entries: int, profile: DeviceProfile) -> float:
    """``memory.s2pt_update_per_entry_s`` per stage-2 descriptor written (component pricing)."""
    _count(entries, "entries")
    return entries * profile.memory.s2pt_update_per_entry_s


def tlb_invalidate_s(invalidations: int, profile: DeviceProfile) -> float:
    """``memory.tlb_invalidate_s`` per broadcast TLBI (SMMU invalidation included)."""
    _count(invalidations, "invalidations")
    return invalidations * profile.memory.tlb_invalidate_s


# --- crypto (runs on CPU cores) -------------------------------------------------------------

def decrypt_s(size_bytes: int, profile: DeviceProfile, cores: int = 1) -> float:
    """AES-256-GCM decryption, wall time on ``cores`` big cores:
    ``cpu.aes_gcm_decrypt_bytes_per_s_per_core`` per core (independent chunks split evenly)."""
    _count(size_bytes, "size_bytes")
    return size_bytes / (_cores(cores) * profile.cpu.aes_gcm_decrypt_bytes_per_s_per_core)


def encrypt_s(size_bytes: int, gaps: ProfileGaps, cores: int = 1) -> float:
    """AES-256-GCM encryption (KV write-back): ``gaps.aes_gcm_encrypt_bytes_per_s_per_core``."""
    _count(size_bytes, "size_bytes")
    return size_bytes / (_cores(cores) * gaps.aes_gcm_encrypt_bytes_per_s_per_core)


def hash_s(size_bytes: int, profile: DeviceProfile, cores: int = 1) -> float:
    """SHA-256 over ``size_bytes``: ``cpu.sha256_bytes_per_s_per_core`` per core."""
    _count(size_bytes, "size_bytes")
    return size_bytes / (_cores(cores) * profile.cpu.sha256_bytes_per_s_per_core)


# --- world switches and the NPU --------------------------------------------------------------

def smc_s(calls: int, profile: DeviceProfile) -> float:
    """``tee.smc_round_trip_s`` per SMC."""
    _count(calls, "calls")
    return calls * profile.tee.smc_round_trip_s


def world_switch_s(switches: int, profile: DeviceProfile) -> float:
    """``tee.world_switch_s`` per normal<->secure transition (an SMC into S-EL1 counts two)."""
    _count(switches, "switches")
    return switches * profile.tee.world_switch_s


def npu_mode_switch_s(switches: int, profile: DeviceProfile) -> float:
    """``npu.mode_switch_s`` per Flex-NPU switch (an aggregate: SMC, S2PT, TLB and scrub)."""
    _count(switches, "switches")
    return switches * profile.npu.mode_switch_s


def npu_job_launch_s(jobs: int, profile: DeviceProfile) -> float:
    """``npu.job_launch_s`` per NPU job submitted."""
    _count(jobs, "jobs")
    return jobs * profile.npu.job_launch_s


def npu_reinit_s(reinits: int, profile: DeviceProfile) -> float:
    """``npu.control_plane_reinit_s`` per full driver detach/attach (two-driver baselines)."""
    _count(reinits, "reinits")
    return reinits * profile.npu.control_plane_reinit_s


def framework_start_s(profile: DeviceProfile, *, from_checkpoint: bool = False) -> float:
    """Secure-world LLM framework start: ``tee.framework_boot_s + tee.metadata_parse_s +
    tee.framework_init_s + tee.tokenizer_init_s`` (TZ-LLM Fig. 1, Llama-3-8B values, not
    scaled to other models). ``from_checkpoint`` drops ``framework_init_s`` (TZ-LLM restores
    the initialized state from a checkpoint)."""
    tee = profile.tee
    init = 0.0 if from_checkpoint else tee.framework_init_s
    return tee.framework_boot_s + tee.metadata_parse_s + init + tee.tokenizer_init_s


# --- DRAM ------------------------------------------------------------------------------------

def dram_s(traffic_bytes: int, profile: DeviceProfile) -> float:
    """DRAM bus occupancy: ``traffic_bytes / dram.bandwidth_bytes_per_s`` (sustained)."""
    _count(traffic_bytes, "traffic_bytes")
    return traffic_bytes / profile.dram.bandwidth_bytes_per_s


def dram_traffic_bytes(work: WorkRecord) -> int:
    """Bytes a record moves over the DRAM bus: a copy reads and writes (2x), zeroing and DMA
    write once, hashing reads once. Flash bytes reach DRAM as ``bytes_dma``."""
    return 2 * work.bytes_copied + work.bytes_zeroed + work.bytes_dma + work.bytes_hashed


def crypto_traffic_bytes(size_bytes: int) -> int:
    """DRAM traffic of decrypting or encrypting ``size_bytes`` in place: read + write."""
    _count(size_bytes, "size_bytes")
    return 2 * size_bytes


# --- a whole WorkRecord ----------------------------------------------------------------------

def price(work: WorkRecord, profile: DeviceProfile, *, basis: Basis = Basis.COMPONENTS,
          gaps: ProfileGaps | None = None, flash_read_requests: int | None = None,
          flash_write_requests: int | None = None) -> ResourceTimes:
    """Price ``work`` per resource.

    ``frames_touched`` is a companion count (of bytes priced elsewhere) and is not priced;
    the copies of migrated pages are inside ``memory.cma_migrate_per_page_s`` (any basis).
    Flash request counts are not in WorkRecord: ``None`` means one request per direction that
    moved bytes (what a single flash read/write record is). Counts that need a parameter the
    profile lacks (``pages_reclaimed``, ``smmu_entries_changed``, flash writes) require
    ``gaps``; without it they raise :class:`ConfigError` rather than cost nothing.
    """
    w = _covered(work, basis, profile)
    aggregate = _aggregate(work, basis, profile)
    reads = _requests(flash_read_requests, w.bytes_read_flash)
    writes = _requests(flash_write_requests, w.bytes_written_flash)
    flash = flash_read_s(w.bytes_read_flash, reads, profile)
    if w.bytes_written_flash or writes:
        flash += flash_write_s(w.bytes_written_flash, writes, profile, _need(gaps, "flash writes"))
    cpu = (buddy_alloc_s(w.pages_allocated, profile) + buddy_free_s(w.pages_freed, profile)
           + copy_s(w.bytes_copied, profile) + zero_s(w.bytes_zeroed, profile)
           + cma_alloc_s(0, w.pages_migrated, profile))
    if w.pages_reclaimed:
        cpu += w.pages_reclaimed * _need(gaps, "pages_reclaimed").reclaim_per_page_s
    monitor = (smc_s(w.smc_calls, profile) + world_switch_s(w.world_switches, profile)
               + s2pt_update_s(w.s2pt_entries_changed, profile)
               + tlb_invalidate_s(w.tlb_invalidations, profile)
               + npu_mode_switch_s(w.npu_mode_switches, profile))
    if w.smmu_entries_changed:
        monitor += w.smmu_entries_changed * _need(gaps, "smmu_entries_changed").smmu_entry_update_s
    times = ResourceTimes(flash_s=flash, cpu_s=cpu, crypto_s=hash_s(w.bytes_hashed, profile),
                          monitor_s=monitor, npu_s=npu_job_launch_s(w.npu_jobs, profile),
                          dram_s=dram_s(_traffic(work, basis), profile))
    return times + aggregate


def _traffic(work: WorkRecord, basis: Basis) -> int:
    """DRAM traffic of the record as done (aggregates cover time, not traffic); an NPU switch's
    ``bytes_zeroed`` is NPU-internal SRAM, not DRAM."""
    traffic = dram_traffic_bytes(work)
    return traffic - work.bytes_zeroed if basis is Basis.NPU_SWITCH else traffic


def _requests(given: int | None, size_bytes: int) -> int:
    if given is None:
        return 1 if size_bytes else 0
    _count(given, "flash requests")
    return given


def _need(gaps: ProfileGaps | None, what: str) -> ProfileGaps:
    if gaps is None:
        raise ConfigError(f"pricing {what} needs a parameter the device profile lacks; "
                          "pass gaps=ProfileGaps(...)")
    return gaps


def _covered(work: WorkRecord, basis: Basis, profile: DeviceProfile) -> WorkRecord:
    """``work`` minus the counts the basis's aggregate already covers."""
    w = WorkRecord(**{f.name: getattr(work, f.name) for f in fields(work)})
    # a migrated page's copy is inside memory.cma_migrate_per_page_s, whatever the basis
    page = profile.memory.page_size_bytes
    w.bytes_copied = max(0, w.bytes_copied - w.pages_migrated * page)
    if basis in (Basis.FLEXMEM_PROTECT, Basis.FLEXMEM_RELEASE):
        w.s2pt_entries_changed = w.smmu_entries_changed = w.tlb_invalidations = 0
    elif basis is Basis.CMA_ALLOC:
        w.pages_allocated = w.pages_migrated = 0
    elif basis is Basis.NPU_SWITCH:
        w.s2pt_entries_changed = w.smmu_entries_changed = w.tlb_invalidations = 0
        w.smc_calls = w.world_switches = w.bytes_zeroed = 0
    return w


def _aggregate(work: WorkRecord, basis: Basis, profile: DeviceProfile) -> ResourceTimes:
    if basis is Basis.FLEXMEM_PROTECT:
        return ResourceTimes(monitor_s=flexmem_protect_s(work.s2pt_entries_changed, profile))
    if basis is Basis.FLEXMEM_RELEASE:
        return ResourceTimes(monitor_s=flexmem_unprotect_s(work.s2pt_entries_changed, profile))
    if basis is Basis.CMA_ALLOC:
        window = work.pages_allocated - work.pages_migrated
        if window < 0:
            raise ConfigError("CMA record with more migrated than allocated pages")
        return ResourceTimes(cpu_s=cma_alloc_s(window, work.pages_migrated, profile))
    return ResourceTimes()  # COMPONENTS; NPU_SWITCH is npu_mode_switches, priced as a count
