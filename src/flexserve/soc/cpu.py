"""CPU load/store paths of the normal world and of the NPU-driver sandbox.

Each access walks a translation regime first (stage-2 on: the table; stage-2 off: IPA ==
PA), then the bus (TZASC, DRAM or MMIO). Nothing is read or written unless every page of
the access passes, so a faulting access has no partial effect.
"""

from __future__ import annotations

import numpy as np

from flexserve.errors import TranslationFault
from flexserve.soc.access import Access, World
from flexserve.soc.bus import PhysicalBus
from flexserve.soc.constants import pages_spanned, physical_runs
from flexserve.soc.stage2 import Stage2Table
from flexserve.soc.work import WorkRecord


class Stage2Regime:
    """The translation in force for one world: a stage-2 table that EL2 can switch off.

    Only the monitor flips :attr:`enabled`. With stage-2 off, IPA == PA over the table's
    whole address space (on-demand protection).
    """

    def __init__(self, table: Stage2Table, enabled: bool = True) -> None:
        self.table = table
        self.enabled = enabled

    def translate_range(self, ipa: int, size_bytes: int, access: Access) -> np.ndarray:
        if self.enabled:
            return self.table.translate_range(ipa, size_bytes, access)
        if ipa < 0:
            raise TranslationFault("negative address")
        first_page, page_count = pages_spanned(ipa, size_bytes)
        if first_page + page_count > self.table.page_count:
            raise TranslationFault("address outside the IPA space")
        return np.arange(first_page, first_page + page_count, dtype=np.int64)


class Stage2CPU:
    """A non-secure CPU context: the only way its software can touch memory."""

    def __init__(self, bus: PhysicalBus, regime: Stage2Regime) -> None:
        self.bus = bus
        self.regime = regime
        self.work = WorkRecord()

    def probe(self, ipa: int, size_bytes: int, access: Access) -> np.ndarray:
        """Check an access without performing it; returns the PA pages."""
        pa_pages = self.regime.translate_range(ipa, size_bytes, access)
        self.bus.check(pa_pages, World.NORMAL)
        return pa_pages

    def read(self, ipa: int, size_bytes: int) -> bytes:
        pa_pages = self.probe(ipa, size_bytes, Access.READ)
        out = bytearray()
        for pa in physical_runs(pa_pages, ipa, size_bytes):
            out += self.bus.read(pa[0], pa[1], World.NORMAL)
        self.work += WorkRecord(bytes_copied=size_bytes, frames_touched=int(pa_pages.size))
        return bytes(out)

    def write(self, ipa: int, data: bytes) -> None:
        data = bytes(data)
        pa_pages = self.probe(ipa, len(data), Access.WRITE)
        pos = 0
        for pa, size_bytes in physical_runs(pa_pages, ipa, len(data)):
            self.bus.write(pa, data[pos:pos + size_bytes], World.NORMAL)
            pos += size_bytes
        self.work += WorkRecord(bytes_copied=len(data), frames_touched=int(pa_pages.size))

    def read_u64(self, ipa: int) -> int:
        return int.from_bytes(self.read(ipa, 8), "little")

    def write_u64(self, ipa: int, value: int) -> None:
        self.write(ipa, (value % (1 << 64)).to_bytes(8, "little"))


class NormalWorldCPU(Stage2CPU):
    """The normal-world OS (the attacker's) CPU context."""


class SandboxCPU(Stage2CPU):
    """The NPU-driver sandbox: normal-world driver code run under the sandbox stage-2."""

