"""Stage-2 tables and the SMMU under random map/unmap/translate sequences.

Model: a dict IPA page -> (PA page, permissions). The CPU walk, the table lookup and the
DMA walk of a normal-world stream (which shares the CPU's regime) must all agree with it,
with stage-2 on or off.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from flexserve.errors import DMAFault, PermissionFault, TranslationFault
from flexserve.soc.access import Access, Perm, World
from flexserve.soc.bus import PhysicalBus
from flexserve.soc.constants import FRAME_SIZE_BYTES
from flexserve.soc.cpu import NormalWorldCPU, Stage2Regime
from flexserve.soc.dma import DmaMaster
from flexserve.soc.memory import PhysicalMemory
from flexserve.soc.smmu import Smmu, StreamId
from flexserve.soc.stage2 import Stage2Table
from flexserve.soc.tzasc import Tzasc

PAGES = 32
ipa_pages = st.integers(-2, PAGES + 2)
pa_pages = st.integers(0, PAGES - 1)
perms = st.sampled_from([Perm.R, Perm.W, Perm.RW, Perm.RX, Perm.RWX])
accesses = st.sampled_from([Access.READ, Access.WRITE, Access.EXEC])


class Stage2Machine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        memory = PhysicalMemory(PAGES * FRAME_SIZE_BYTES)
        bus = PhysicalBus(memory, Tzasc(PAGES))
        self.table = Stage2Table.allocate(PAGES)
        self.regime = Stage2Regime(self.table)
        self.cpu = NormalWorldCPU(bus, self.regime)
        smmu = Smmu(bus)
        smmu.configure(StreamId.GENERIC_DMA, self.regime, World.NORMAL)
        self.dma = DmaMaster(StreamId.GENERIC_DMA, smmu, bus)
        self.model: dict[int, tuple[int, Perm]] = {}

    @rule(ipa=st.integers(0, PAGES - 1), pa=pa_pages, perm=perms)
    def map_page(self, ipa, pa, perm):
        self.table.map_pages(np.array([ipa]), np.array([pa]), perm)
        self.model[ipa] = (pa, perm)

    @rule(ipa=ipa_pages)
    def unmap_page(self, ipa):
        if 0 <= ipa < PAGES:
            self.table.unmap_pages(np.array([ipa]))
            self.model.pop(ipa, None)
        else:
            with pytest.raises(TranslationFault):
                self.table.unmap_pages(np.array([ipa]))

    @rule(enabled=st.booleans())
    def switch_stage2(self, enabled):
        self.regime.enabled = enabled

    @rule(ipa=ipa_pages, offset=st.integers(0, FRAME_SIZE_BYTES - 1), access=accesses)
    def translate(self, ipa, offset, access):
        address = ipa * FRAME_SIZE_BYTES + offset
        expected = self._expected(ipa, access)
        if expected is None:
            with pytest.raises((TranslationFault, PermissionFault)):
                self.regime.translate_range(address, 1, access)
            with pytest.raises(DMAFault):
                self.dma.check(address, 1, access)
        else:
            assert self.regime.translate_range(address, 1, access).tolist() == [expected]
            assert self.dma.check(address, 1, access).tolist() == [expected]

    @rule(ipa=st.integers(0, PAGES - 1), data=st.binary(min_size=1, max_size=16))
    def cpu_write_then_dma_read(self, ipa, data):
        address = ipa * FRAME_SIZE_BYTES + 8
        if self._expected(ipa, Access.WRITE) is None or self._expected(ipa, Access.READ) is None:
            return
        self.cpu.write(address, data)
        assert self.dma.read(address, len(data)) == data

    def _expected(self, ipa: int, access: Access) -> int | None:
        if not 0 <= ipa < PAGES:
            return None
        if not self.regime.enabled:
            return ipa
        entry = self.model.get(ipa)
        if entry is None or not entry[1] & access.required:
            return None
        return entry[0]

    @invariant()
    def table_matches_model(self):
        lookup = self.table.lookup(np.arange(PAGES))
        for ipa in range(PAGES):
            assert lookup[ipa] == self.model.get(ipa, (-1, Perm.NONE))[0]


Stage2Machine.TestCase.settings = settings(max_examples=40, stateful_step_count=40,
                                           deadline=None)
TestStage2AndSmmu = Stage2Machine.TestCase
