"""The memory-management event log: what the normal-world OS did, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class EventKind(Enum):
    PRESSURE = "pressure"              # free memory fell below the low watermark
    DROP_CACHE = "drop_cache"          # clean page cache dropped
    SECURE_RECLAIM = "secure_reclaim"  # rsmem_reclaim returned Flex-Mem pages
    SWAP_OUT = "swap_out"              # anonymous pages written to swap
    KILL = "kill"                      # the low-memory killer ended an app
    OOM = "oom"                        # an allocation failed after everything was tried
    MIGRATE = "migrate"                # movable pages moved out of a contiguous range
    CMA_ALLOC = "cma_alloc"            # a contiguous allocation succeeded
    CMA_BUSY = "cma_busy"              # a contiguous allocation was blocked
    FLEXMEM_ALLOC = "flexmem_alloc"    # pages handed to the secure world
    FLEXMEM_RETURN = "flexmem_return"  # pages given back by the secure world


@dataclass(frozen=True)
class Event:
    seq: int
    kind: EventKind
    pages: int = 0
    subject: str = ""  # app name, region name, or reason


@dataclass
class EventLog:
    events: list[Event] = field(default_factory=list)

    def record(self, kind: EventKind, pages: int = 0, subject: str = "") -> Event:
        event = Event(len(self.events), kind, pages, subject)
        self.events.append(event)
        return event

    def of_kind(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def total_pages(self, kind: EventKind) -> int:
        return sum(e.pages for e in self.events if e.kind == kind)
