"""Flex-Mem ownership under random sequences of OS, TA and attacker actions.

A model tracks which IPA pages are protected, for which owner, whether the TA mapped
them and what it wrote. After every step: the monitor's invariants hold, the ledger agrees
with the model, protected pages fault for the attacker, returned pages read as zeros.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from flexserve.errors import DMAFault, SMCError, TranslationFault
from flexserve.monitor.audit import audit
from flexserve.monitor.platform import boot_platform
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcStatus
from flexserve.soc.board import BoardConfig
from flexserve.soc.constants import FRAME_SIZE_BYTES

owners = st.integers(1, 3)


class FlexMemMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._flash = tempfile.TemporaryDirectory(prefix="flexmem-sm-")
        self.platform = boot_platform(BoardConfig.small(flash_root=Path(self._flash.name)))
        self.os = self.platform.normal
        self.port = self.platform.secure.port
        first = self.platform.soc.layout.el2_base_frame \
            + self.platform.monitor.ctx.region.frame_count
        self.free = list(range(first, first + 24))
        layout = self.platform.soc.layout
        self.candidates = [*self.free, first - 1, layout.tee_base_frame, layout.npu_mmio_page]
        self.protected: dict[int, int] = {}   # ipa page -> owner
        self.mapped: set[int] = set()         # protected pages the TA mapped
        self.returned: set[int] = set()       # pages that came back from Flex-Mem
        self.stage2_on = True

    def teardown(self) -> None:
        self._flash.cleanup()

    # ----- normal world --------------------------------------------------------------------
    @rule(owner=owners, data=st.data())
    def protect(self, owner, data):
        pages = data.draw(st.lists(st.sampled_from(self.candidates), min_size=1, max_size=5,
                                   unique=True))
        expect = all(p in self.free and p not in self.protected for p in pages)
        result = self.os.smc(FunctionId.FLEXMEM_PROTECT, owner, len(pages), payload=pages)
        assert result.ok == expect, result.status
        self.stage2_on = True  # calls that need EL2 state re-enable (and verify) stage-2
        if expect:
            self.protected.update({p: owner for p in pages})

    @rule(owner=owners, data=st.data())
    def os_release(self, owner, data):
        pages = data.draw(st.lists(st.sampled_from(self.candidates), min_size=1, max_size=5,
                                   unique=True))
        expect = all(self.protected.get(p) == owner and p not in self.mapped for p in pages)
        result = self.os.smc(FunctionId.FLEXMEM_RELEASE, owner, len(pages), payload=pages)
        assert result.ok == expect, result.status
        self.stage2_on = True
        if expect:
            self._returned(pages)

    @rule(idle_ms=st.sampled_from([0, 10_000, 60_000]))
    def odp_disable(self, idle_ms):
        result = self.os.smc(FunctionId.ODP_DISABLE_S2, idle_ms)
        if not self.stage2_on:
            assert result.status is SmcStatus.NOT_REQUIRED
        elif self.protected:
            assert result.status in (SmcStatus.BUSY, SmcStatus.DENIED)
        else:
            assert result.ok == (idle_ms >= 10_000)
            self.stage2_on = not result.ok

    @rule()
    def odp_enable(self):
        result = self.os.smc(FunctionId.ODP_ENABLE_S2)
        assert result.ok == (not self.stage2_on)
        self.stage2_on = True

    # ----- trusted OS ----------------------------------------------------------------------
    def _frames(self, pages):
        return np.array(pages, dtype=np.int64)  # identity layout: frame == IPA page

    @precondition(lambda self: self.protected)
    @rule(owner=owners, data=st.data())
    def ta_map(self, owner, data):
        pages = data.draw(st.lists(st.sampled_from(sorted(self.protected)), min_size=1,
                                   max_size=4, unique=True))
        expect = all(self.protected[p] == owner and p not in self.mapped for p in pages)
        self._secure(expect, self.port.map_frames, owner, self._frames(pages))
        if expect:
            self.mapped.update(pages)

    @precondition(lambda self: self.mapped)
    @rule(data=st.data(), payload=st.binary(min_size=1, max_size=64))
    def ta_write(self, data, payload):
        page = data.draw(st.sampled_from(sorted(self.mapped)))
        self.port.write(self.protected[page], page, 0, payload)
        assert self.port.read(self.protected[page], page, 0, len(payload)) == payload

    @precondition(lambda self: self.mapped)
    @rule(owner=owners, data=st.data())
    def ta_unmap(self, owner, data):
        pages = data.draw(st.lists(st.sampled_from(sorted(self.mapped)), min_size=1,
                                   max_size=4, unique=True))
        expect = all(self.protected[p] == owner for p in pages)
        self._secure(expect, self.port.unmap_frames, owner, self._frames(pages))
        if expect:
            self.mapped.difference_update(pages)

    @precondition(lambda self: self.protected)
    @rule(owner=owners, data=st.data())
    def ta_release(self, owner, data):
        pages = data.draw(st.lists(st.sampled_from(sorted(self.protected)), min_size=1,
                                   max_size=4, unique=True))
        expect = all(self.protected[p] == owner for p in pages)
        self._secure(expect, self.port.release_frames, owner, self._frames(pages))
        if expect:
            self._returned(pages)

    def _secure(self, expect, call, *args):
        if expect:
            call(*args)
            return
        with pytest.raises(SMCError):
            call(*args)

    def _returned(self, pages):
        for page in pages:
            del self.protected[page]
            self.mapped.discard(page)
        self.returned.update(pages)

    # ----- attacker ------------------------------------------------------------------------
    @rule(data=st.data())
    def attacker_reads(self, data):
        page = data.draw(st.sampled_from(self.free))
        if page in self.protected and self.stage2_on:
            with pytest.raises(TranslationFault):
                self.os.cpu.read(page * FRAME_SIZE_BYTES, 8)
            return
        content = self.os.cpu.read(page * FRAME_SIZE_BYTES, FRAME_SIZE_BYTES)
        if page in self.returned:
            assert content == bytes(FRAME_SIZE_BYTES)

    @rule(data=st.data())
    def attacker_dmas(self, data):
        page = data.draw(st.sampled_from(self.free))
        address = page * FRAME_SIZE_BYTES
        if page in self.protected and self.stage2_on:
            with pytest.raises(DMAFault):
                self.os.flash.write_from_memory("leak.bin", 0, address, 16)
            with pytest.raises(DMAFault):
                self.os.generic_dma.write(address, b"scribble")
            return
        self.os.flash.write_from_memory("leak.bin", 0, address, 16)
        if page in self.returned:
            assert self.os.storage.read_range("leak.bin", 0, 16) == bytes(16)

    # ----- invariants ----------------------------------------------------------------------
    @invariant()
    def monitor_invariants_hold(self):
        assert audit(self.platform.monitor) == []

    @invariant()
    def ledger_matches_model(self):
        for owner in (1, 2, 3):
            expected = sorted(p for p, o in self.protected.items() if o == owner)
            ledger = self.platform.monitor.ctx.ledger  # introspection: no side effects
            assert ledger.frames_of(owner).tolist() == expected


FlexMemMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30,
                                            deadline=None)
TestFlexMemOwnership = FlexMemMachine.TestCase
