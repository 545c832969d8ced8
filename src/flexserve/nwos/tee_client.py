"""The normal world's TEE client (libteec and the kernel's TEE driver, in one object).

A call writes a message (see :mod:`flexserve.tee.msg`) and any memory-reference payloads into
kernel pages, issues the forwarded SMC with the message's physical address, reads the answer
back and frees the pages. Nothing here is trusted by the secure side: the trusted OS copies
and checks everything it is given.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from flexserve.errors import FlexServeError
from flexserve.monitor.platform import NormalWorld
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcStatus
from flexserve.nwos.kernel import NormalWorldKernel
from flexserve.nwos.owners import KERNEL_OWNER
from flexserve.nwos.page import PAGE_SIZE_BYTES, PageKind, pages_for_bytes
from flexserve.tee.gp import MsgCommand, Origin, ParamType, TeeResult
from flexserve.tee.msg import MSG_BYTES, Message, MsgParam, decode


class TeeClientError(FlexServeError):
    """A TEE call failed; carries the GlobalPlatform result code and origin."""

    def __init__(self, result: int, origin: int) -> None:
        name = TeeResult(result).name if result in TeeResult._value2member_map_ else hex(result)
        super().__init__(f"TEE call failed: {name} (origin {origin})")
        self.result = result
        self.origin = origin


@dataclass
class ClientParam:
    """One parameter: values ``a``/``b``, or a memory reference (``data`` in, ``size`` out)."""

    type: ParamType
    a: int = 0
    b: int = 0
    data: bytes = b""
    size_bytes: int = 0  # output capacity for MEMREF_OUTPUT / MEMREF_INOUT


def _order_for(count_pages: int) -> int:
    return max(0, (count_pages - 1).bit_length())


class TeeClient:
    def __init__(self, kernel: NormalWorldKernel, normal: NormalWorld) -> None:
        self.kernel = kernel
        self.normal = normal

    def open_session(self, ta_uuid: uuid.UUID, params: list[ClientParam] | None = None) -> int:
        msg = Message(MsgCommand.OPEN_SESSION, ta_uuid=ta_uuid)
        answer, _ = self._call(msg, params or [])
        return answer.session

    def invoke(self, session: int, command: int,
               params: list[ClientParam] | None = None) -> list[ClientParam]:
        """Invoke a TA command; returns the parameters with outputs filled in."""
        msg = Message(MsgCommand.INVOKE_COMMAND, function=command, session=session)
        _, outputs = self._call(msg, params or [])
        return outputs

    def close_session(self, session: int) -> None:
        self._call(Message(MsgCommand.CLOSE_SESSION, session=session), [])

    # ----- one call -----
    def _call(self, msg: Message, params: list[ClientParam]) -> tuple[Message, list[ClientParam]]:
        blocks: list[tuple[int, int]] = []
        try:
            msg.params = [self._place(p, blocks) for p in params]
            msg_pa = self._alloc(MSG_BYTES, blocks)
            self.normal.cpu.write(msg_pa, msg.encode())
            status = self.normal.smc(FunctionId.TOS_CALL_WITH_ARG, msg_pa).status
            if status != SmcStatus.SUCCESS:
                raise TeeClientError(TeeResult.ERROR_COMMUNICATION, Origin.COMMS)
            answer = decode(self.normal.cpu.read(msg_pa, MSG_BYTES))
            if answer.result != TeeResult.SUCCESS:
                raise TeeClientError(answer.result, answer.origin)
            return answer, [self._collect(p, w) for p, w in zip(params, answer.params,
                                                                 strict=True)]
        finally:
            for first_pfn, order in blocks:
                self.kernel.free(np.arange(first_pfn, first_pfn + (1 << order)))

    def _alloc(self, size_bytes: int, blocks: list[tuple[int, int]]) -> int:
        order = _order_for(pages_for_bytes(max(size_bytes, 1)))
        first_pfn = self.kernel.alloc_block(KERNEL_OWNER, PageKind.KERNEL, order)
        blocks.append((first_pfn, order))
        return first_pfn * PAGE_SIZE_BYTES  # identity IPA == PA for kernel memory

    def _place(self, param: ClientParam, blocks: list[tuple[int, int]]) -> MsgParam:
        if not param.type.is_memref:
            return MsgParam(param.type, param.a, param.b)
        size = len(param.data) if param.type == ParamType.MEMREF_INPUT else param.size_bytes
        if param.type == ParamType.MEMREF_INOUT:
            size = max(size, len(param.data))
        pa = self._alloc(size, blocks)
        if param.type.is_input and param.data:
            self.normal.cpu.write(pa, param.data)
        return MsgParam(param.type, pa, size)

    def _collect(self, param: ClientParam, wire: MsgParam) -> ClientParam:
        if not param.type.is_output:
            return param
        if param.type.is_value:
            return ClientParam(param.type, wire.a, wire.b)
        data = self.normal.cpu.read(wire.a, wire.b) if wire.b else b""
        return ClientParam(param.type, data=data, size_bytes=wire.b)
