"""Secure (or plain) memory for a model, allocated on a busy world by the real mechanisms.

Each system's memory kind runs its own normal-world mechanism on a :class:`World`:

- ``normal`` (NW-Base): ordinary anonymous pages from the kernel (reclaim and LMK behind);
- ``flexmem`` (FlexServe): ``rsmem_alloc`` through the kernel Flex-Mem manager and the real
  monitor's FLEXMEM_PROTECT, one call per chunk;
- ``cma`` (the strawmen): the boot-time CMA region, first allocated then grown block by block;
  every movable page in the claimed window is migrated out (its new home may need reclaim).

Each chunk's :class:`~flexserve.soc.work.WorkRecord` is what the mechanisms counted; it is
priced with the profile (plus :mod:`nw_gaps` for reclaim and swap writes), never estimated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flexserve.bench.paper.background import World
from flexserve.bench.paper.nw_gaps import reclaim_gaps
from flexserve.errors import ConfigError
from flexserve.nwos.cma import ContigAllocation, ContigRegion
from flexserve.nwos.events import EventKind
from flexserve.nwos.page import MAX_ORDER_PAGES, PAGE_SIZE_BYTES, PageKind
from flexserve.nwos.workdelta import since, snapshot
from flexserve.soc.work import WorkRecord
from flexserve.systems.config import MemoryKind
from flexserve.timing import costs
from flexserve.timing.profile import DeviceProfile

SECURE_OWNER = 7


@dataclass(frozen=True)
class ChunkAlloc:
    """One allocation call: the pages asked for and the work the mechanisms recorded."""

    pages: int
    work: WorkRecord
    region_changes: int = 0  # TZASC region reprogrammings (CMA only)


@dataclass(frozen=True)
class AllocRun:
    """Every chunk of one model's memory, and what the normal world did for it."""

    memory: MemoryKind
    chunks: tuple[ChunkAlloc, ...]
    events: dict[str, int]  # event kind -> pages, over the whole run

    @property
    def work(self) -> WorkRecord:
        total = WorkRecord()
        for chunk in self.chunks:
            total += chunk.work
        return total

    def event_mib(self, kind: EventKind) -> float:
        return self.events.get(kind.value, 0) * PAGE_SIZE_BYTES / 2**20

    @property
    def killed(self) -> int:
        return self.events.get(f"{EventKind.KILL.value}_count", 0)


def allocate(world: World, memory: MemoryKind, chunk_pages: Sequence[int]) -> AllocRun:
    """Allocate ``chunk_pages`` one call after another with ``memory``'s mechanism."""
    if not chunk_pages or min(chunk_pages) <= 0:
        raise ConfigError("need at least one chunk, each > 0 pages")
    first = len(world.kernel.events.events)
    run = {MemoryKind.NORMAL: _plain, MemoryKind.FLEXMEM: _flexmem, MemoryKind.CMA: _cma}
    chunks = run[memory](world, chunk_pages)
    return AllocRun(memory, tuple(chunks), _events(world, first))


def _plain(world: World, chunk_pages: Sequence[int]) -> list[ChunkAlloc]:
    kernel = world.kernel
    owner = kernel.spawn_app("llm-nw", oom_score_adj=-900).app_id  # the foreground app
    out = []
    for pages in chunk_pages:
        before = snapshot(kernel.work)
        kernel.alloc(owner, PageKind.ANON, pages)
        out.append(ChunkAlloc(pages, since(kernel.work, before)))
    return out


def _flexmem(world: World, chunk_pages: Sequence[int]) -> list[ChunkAlloc]:
    kernel, manager = world.kernel, world.flexmem_manager()
    out = []
    for pages in chunk_pages:
        before = snapshot(kernel.work) + snapshot(manager.work)
        manager.rsmem_alloc(SECURE_OWNER, pages * PAGE_SIZE_BYTES)
        out.append(ChunkAlloc(pages, since(kernel.work + manager.work, before)))
    return out


def _cma(world: World, chunk_pages: Sequence[int]) -> list[ChunkAlloc]:
    if world.cma_start_pfn is None:
        raise ConfigError("this world has no CMA region")
    region = ContigRegion(world.kernel, world.cma_start_pfn, world.cma_pages)
    held: ContigAllocation | None = None
    out = []
    for pages in chunk_pages:
        need = (held.count_pages if held else 0)
        claimed_after = -(-(_claimed(out) + pages) // MAX_ORDER_PAGES) * MAX_ORDER_PAGES
        extra = claimed_after - need
        if extra <= 0:  # fits in the blocks already claimed: no allocator work
            out.append(ChunkAlloc(pages, WorkRecord()))
            continue
        held = region.alloc(extra) if held is None else region.grow(held, extra)
        out.append(ChunkAlloc(pages, held.work, region_changes=1))
    return out


def _claimed(chunks: list[ChunkAlloc]) -> int:
    return sum(c.pages for c in chunks)


def _events(world: World, first: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for event in world.kernel.events.events[first:]:
        out[event.kind.value] = out.get(event.kind.value, 0) + event.pages
        if event.kind is EventKind.KILL:
            key = f"{EventKind.KILL.value}_count"
            out[key] = out.get(key, 0) + 1
    return out


def chunk_times(chunk: ChunkAlloc, memory: MemoryKind, profile: DeviceProfile
                ) -> tuple[float, float]:
    """(core seconds, flash seconds) of one allocation call, from its recorded work.

    The core part is the allocator, reclaim, migration and monitor work on the calling
    thread; the flash part is the swap-out its direct reclaim waited for.
    """
    gaps = reclaim_gaps(profile)
    if memory is MemoryKind.CMA:
        if not chunk.region_changes:
            return 0.0, 0.0
        priced = costs.price(chunk.work, profile, basis=costs.Basis.CMA_ALLOC, gaps=gaps)
        return priced.core_s + costs.tzasc_config_s(chunk.region_changes, profile), priced.flash_s
    basis = costs.Basis.FLEXMEM_PROTECT if memory is MemoryKind.FLEXMEM else costs.Basis.COMPONENTS
    priced = costs.price(chunk.work, profile, basis=basis, gaps=gaps)
    return priced.core_s, priced.flash_s


def chunk_s(chunk: ChunkAlloc, memory: MemoryKind, profile: DeviceProfile) -> float:
    """Device seconds of one allocation call if nothing overlaps it (the caller waits for
    everything it caused: direct reclaim, swap writes, migrations)."""
    return sum(chunk_times(chunk, memory, profile))


def run_s(run: AllocRun, profile: DeviceProfile) -> float:
    return sum(chunk_s(c, run.memory, profile) for c in run.chunks)
