"""The SMC dispatch table (TF-A style): function id -> argument checks -> service.

The normal world reaches the monitor only here. The dispatcher never trusts a value: the
function id and every register must be an ``int`` in u64 range, unknown ids return
NOT_SUPPORTED, refusals return their status, and a refused call changes nothing.
:class:`SecurityError` (a tampered EL2 region found on re-enable) is the one deliberate
exception: the monitor has locked itself and the caller must learn it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from flexserve.errors import SMCError
from flexserve.monitor.args import copy_page_list, is_register_value
from flexserve.monitor.flexmem import FlexMem
from flexserve.monitor.flexnpu import FlexNpu
from flexserve.monitor.guest_s2 import GuestStage2
from flexserve.monitor.ondemand import OnDemandProtection
from flexserve.monitor.smc_ids import ABI_VERSION, FunctionId
from flexserve.monitor.status import SmcResult, SmcStatus
from flexserve.soc.work import WorkRecord

SMC_ARG_REGISTERS = 7  # x1..x7

Outcome = tuple[WorkRecord, tuple[int, ...]]
Handler = Callable[[tuple[int, ...], object], Outcome]
#: The trusted OS's entry for forwarded calls: message address in, (work, result) out.
TrustedOsEntry = Callable[[int], tuple[WorkRecord, int]]


@dataclass(frozen=True)
class SmcService:
    fid: FunctionId
    handler: Handler


class SmcDispatcher:
    def __init__(self, flexmem: FlexMem, guest_s2: GuestStage2, flexnpu: FlexNpu,
                 odp: OnDemandProtection) -> None:
        self.flexmem = flexmem
        self.guest_s2 = guest_s2
        self.flexnpu = flexnpu
        self.odp = odp
        self.table: dict[int, SmcService] = {
            int(s.fid): s for s in [
                SmcService(FunctionId.VERSION, self._version),
                SmcService(FunctionId.FLEXMEM_PROTECT, self._protect),
                SmcService(FunctionId.FLEXMEM_RELEASE, self._release),
                SmcService(FunctionId.FLEXMEM_QUERY, self._query),
                SmcService(FunctionId.S2_MAP, self._s2_map),
                SmcService(FunctionId.S2_UNMAP, self._s2_unmap),
                SmcService(FunctionId.FLEXNPU_REGISTER_DRIVER, self._npu_register),
                SmcService(FunctionId.FLEXNPU_RECALL, self._npu_recall),
                SmcService(FunctionId.FLEXNPU_STATUS, self._npu_status),
                SmcService(FunctionId.ODP_DISABLE_S2, self._odp_disable),
                SmcService(FunctionId.ODP_ENABLE_S2, self._odp_enable),
                SmcService(FunctionId.ODP_STATUS, self._odp_status),
                SmcService(FunctionId.TOS_CALL_WITH_ARG, self._tos_call),
            ]}
        self._trusted_os: TrustedOsEntry | None = None

    def register_trusted_os(self, entry: TrustedOsEntry) -> None:
        """Boot-time: the secure world installs its entry for forwarded calls (once)."""
        if self._trusted_os is not None:
            raise SMCError(SmcStatus.DENIED, "a trusted OS is already registered")
        self._trusted_os = entry

    def dispatch(self, fid: object, args: tuple[object, ...] = (),
                 payload: object = None) -> SmcResult:
        """Handle one SMC from the normal world."""
        entry = SmcResult(SmcStatus.SUCCESS, (), WorkRecord(smc_calls=1, world_switches=2))
        service = self.table.get(cast(int, fid)) if is_register_value(fid) else None
        if service is None:
            return SmcResult(SmcStatus.NOT_SUPPORTED, (), entry.work)
        if len(args) > SMC_ARG_REGISTERS or not all(is_register_value(a) for a in args):
            return SmcResult(SmcStatus.INVALID_PARAMETER, (), entry.work)
        values = [int(cast(int, a)) for a in args]
        registers = tuple(values) + (0,) * (SMC_ARG_REGISTERS - len(values))
        try:
            work, values = service.handler(registers, payload)
        except SMCError as refusal:
            return SmcResult(SmcStatus(refusal.code), (), entry.work)
        return SmcResult(SmcStatus.SUCCESS, values, entry.work + work)

    # ----- handlers: unpack registers, copy payloads, call a service -----
    def _version(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return WorkRecord(), ABI_VERSION

    def _page_list(self, count: int, payload: object) -> np.ndarray:
        return copy_page_list(payload, count, self.flexmem.ctx.ipa_pages)

    def _protect(self, regs: tuple[int, ...], payload: object) -> Outcome:
        owner, count = regs[0], regs[1]
        pages = self._page_list(count, payload)
        return self.flexmem.protect(owner, pages), (count,)

    def _release(self, regs: tuple[int, ...], payload: object) -> Outcome:
        owner, count = regs[0], regs[1]
        pages = self._page_list(count, payload)
        return self.flexmem.release_by_ipa(owner, pages), (count,)

    def _query(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return WorkRecord(), self.flexmem.query(regs[0])

    def _s2_map(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return self.guest_s2.map(regs[0], regs[1], regs[2], regs[3]), ()

    def _s2_unmap(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return self.guest_s2.unmap(regs[0], regs[1]), ()

    def _npu_register(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return self.flexnpu.register_driver(regs[0], regs[1], regs[2]), ()

    def _npu_recall(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return self.flexnpu.recall(), ()

    def _npu_status(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return WorkRecord(), (int(self.flexnpu.mode),)

    def _odp_disable(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return self.odp.disable(regs[0]), ()

    def _odp_enable(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return self.odp.enable(), ()

    def _tos_call(self, regs: tuple[int, ...], payload: object) -> Outcome:
        if self._trusted_os is None:
            raise SMCError(SmcStatus.NOT_SUPPORTED)
        work, result = self._trusted_os(regs[0])
        return work, (result,)

    def _odp_status(self, regs: tuple[int, ...], payload: object) -> Outcome:
        return WorkRecord(), (int(self.odp.stage2_enabled), int(self.odp.ctx.locked))
