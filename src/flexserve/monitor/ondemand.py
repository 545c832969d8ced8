"""On-demand protection: switch stage-2 off while no secure task runs (EL3 + EL2).

Before switching off, EL3 hashes the whole EL2 region (code image, header, ledger, normal
and sandbox S2PTs) with SHA-256 and keeps the digest in EL3 memory (TZASC-protected, i.e.
this object, unreachable from the normal world). While stage-2 is off the normal world
reaches the EL2 region by IPA == PA. Re-enabling recomputes the digest; on any mismatch
the monitor locks itself (fail closed: every later Flex service is refused) and raises
:class:`SecurityError`.
"""

from __future__ import annotations

import hashlib
import hmac

from flexserve.errors import SecurityError
from flexserve.monitor.core import MonitorContext, refuse
from flexserve.monitor.status import SmcStatus
from flexserve.soc.npu import NpuMode
from flexserve.soc.work import WorkRecord


class OnDemandProtection:
    def __init__(self, ctx: MonitorContext) -> None:
        self.ctx = ctx
        self._digest: bytes | None = None  # EL3-private

    @property
    def stage2_enabled(self) -> bool:
        regime = self.ctx.soc.normal_regime
        return regime is not None and regime.enabled

    def _hash_el2(self) -> tuple[bytes, WorkRecord]:
        buffer = self.ctx.region.buffer
        digest = hashlib.sha256(buffer.data).digest()
        return digest, WorkRecord(bytes_hashed=int(buffer.nbytes))

    def disable(self, idle_ms: int) -> WorkRecord:
        """Switch stage-2 off after ``idle_ms`` of idleness (caller-measured)."""
        self.ctx.require_unlocked()
        if not self.stage2_enabled:
            refuse(SmcStatus.NOT_REQUIRED)
        if idle_ms < self.ctx.config.idle_window_ms:
            refuse(SmcStatus.DENIED)
        if self.ctx.ledger.flex_frame_count() or self.ctx.soc.npu.mode is NpuMode.SECURE:
            refuse(SmcStatus.BUSY)
        self._digest, record = self._hash_el2()
        self._set_enabled(False)
        record += WorkRecord(tlb_invalidations=self.ctx.tlbi_count(self.ctx.ipa_pages),
                             world_switches=2)
        return record

    def enable(self) -> WorkRecord:
        """Verify the EL2 region against the stored digest, then switch stage-2 on."""
        self.ctx.require_unlocked()
        if self.stage2_enabled:
            refuse(SmcStatus.NOT_REQUIRED)
        digest, record = self._hash_el2()
        if self._digest is None or not hmac.compare_digest(digest, self._digest):
            self.ctx.locked = True
            raise SecurityError()
        self._digest = None
        self._set_enabled(True)
        record += WorkRecord(tlb_invalidations=self.ctx.tlbi_count(self.ctx.ipa_pages),
                             world_switches=2)
        return record

    def ensure_enabled(self) -> WorkRecord:
        """Services that need EL2 state re-enable (and verify) stage-2 first."""
        self.ctx.require_unlocked()
        if self.stage2_enabled:
            return WorkRecord()
        return self.enable()

    def _set_enabled(self, enabled: bool) -> None:
        regime = self.ctx.soc.normal_regime
        assert regime is not None
        regime.enabled = enabled
        self.ctx.soc.smmu.invalidate_tlb()
