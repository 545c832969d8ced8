"""The trusted OS: TA sessions in GlobalPlatform style, behind one forwarded SMC.

A normal-world client writes a :mod:`~flexserve.tee.msg` message into shared memory and
issues ``TOS_CALL_WITH_ARG`` with its physical address; the monitor forwards the call here.
The trusted OS then, in this order:

1. copies the message into secure memory and decodes only the copy;
2. copies every input memory reference into a private buffer (refusing ranges that are not
   ordinary normal memory: Flex-Mem, TZASC regions, MMIO);
3. runs the TA command on the private copies;
4. copies outputs back to the client's buffers and writes the result into the message.

TAs get secure memory through :class:`TaServices`: frames the normal world's Flex-Mem manager
allocated and the monitor protected (``rsmem_alloc``, an RPC to the normal world), which the
trusted OS verifies with the monitor before mapping them into the TA.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from flexserve.errors import (
    ConfigError,
    ContextOverflowError,
    FlexServeError,
    OutOfMemoryError,
    SecurityError,
    SMCError,
)
from flexserve.monitor.platform import Platform
from flexserve.monitor.secure_port import FlexBuffer, SecureWorldPort
from flexserve.soc.board import TEE_TZASC_REGION
from flexserve.soc.tzasc import TZASC_REGION_COUNT
from flexserve.soc.work import WorkRecord
from flexserve.tee.gp import MsgCommand, Origin, TeeError, TeeResult
from flexserve.tee.msg import MSG_BYTES, Message, MsgParam, decode
from flexserve.tee.ta import TaParam, TrustedApplication

#: Largest memory reference copied into secure memory per parameter.
MAX_MEMREF_BYTES = 16 * 1024 * 1024
#: Flex-Mem owner ids are 1..255 (monitor ABI); the trusted OS gives one to each TA.
FIRST_TA_OWNER, LAST_TA_OWNER = 1, 255


class NormalWorldRpc(Protocol):
    """Services the trusted OS asks of the normal world (OP-TEE calls this RPC)."""

    def rsmem_alloc(self, owner: int, size_bytes: int) -> np.ndarray: ...

    def rsmem_free(self, owner: int, ipa_pages: np.ndarray) -> int: ...


class ContigRpc(Protocol):
    """Contiguous (CMA) ranges from the normal world, for TZASC-protected memory."""

    def contig_alloc(self, owner: int, size_bytes: int) -> tuple[int, int]: ...

    def contig_grow(self, owner: int, first_pfn: int, extra_bytes: int) -> int: ...

    def contig_free(self, owner: int, first_pfn: int) -> int: ...


@dataclass
class ContiguousAllocation:
    """One TZASC region of a TA: frames ``[base_frame, base_frame + frame_count)``."""

    slot: int
    base_frame: int
    frame_count: int


@dataclass
class SecureAllocation:
    """Flex-Mem frames mapped into one TA, and a byte view over them."""

    frames: np.ndarray
    buffer: FlexBuffer
    size_bytes: int


class TaServices:
    """What the trusted OS offers one TA instance."""

    def __init__(self, tos: TrustedOS, owner: int) -> None:
        self._tos = tos
        self.owner = owner

    @property
    def port(self) -> SecureWorldPort:
        return self._tos.port

    def alloc_secure(self, size_bytes: int) -> SecureAllocation:
        return self._tos.alloc_secure(self.owner, size_bytes)

    def free_secure(self, allocation: SecureAllocation) -> None:
        self._tos.free_secure(self.owner, allocation)

    def surrender_secure(self, allocation: SecureAllocation) -> np.ndarray:
        """Scrub and unmap for ``rsmem_reclaim``; the normal world releases the pages."""
        return self._tos.surrender_secure(self.owner, allocation)

    def alloc_contiguous(self, size_bytes: int) -> ContiguousAllocation:
        return self._tos.alloc_contiguous(self.owner, size_bytes)

    def grow_contiguous(self, allocation: ContiguousAllocation, extra_bytes: int) -> None:
        self._tos.grow_contiguous(self.owner, allocation, extra_bytes)

    def free_contiguous(self, allocation: ContiguousAllocation) -> None:
        self._tos.free_contiguous(self.owner, allocation)


@dataclass
class _Session:
    ta: TrustedApplication
    state: Any


_RESULT_OF_ERROR: tuple[tuple[type[FlexServeError], TeeResult], ...] = (
    (SecurityError, TeeResult.ERROR_SECURITY),
    (OutOfMemoryError, TeeResult.ERROR_OUT_OF_MEMORY),
    (ConfigError, TeeResult.ERROR_BAD_PARAMETERS),
    (ContextOverflowError, TeeResult.ERROR_EXCESS_DATA),  # the prompt does not fit
)


def result_of(error: FlexServeError) -> TeeResult:
    for kind, result in _RESULT_OF_ERROR:
        if isinstance(error, kind):
            return result
    return TeeResult.ERROR_GENERIC


class TrustedOS:
    def __init__(self, port: SecureWorldPort, rpc: NormalWorldRpc | None = None,
                 max_memref_bytes: int = MAX_MEMREF_BYTES, contig: ContigRpc | None = None
                 ) -> None:
        self.port = port
        self.rpc = rpc
        self.contig = contig
        self._tzasc_slots: dict[int, int] = {}  # TZASC slot -> owner
        self.max_memref_bytes = max_memref_bytes
        self._tas: dict[uuid.UUID, TrustedApplication] = {}
        self._sessions: dict[int, _Session] = {}
        self._session_ids = itertools.count(1)
        self._owner_ids = itertools.count(FIRST_TA_OWNER)

    # ----- boot -----
    def install(self, ta_class: type[TrustedApplication]) -> TrustedApplication:
        """Instantiate a single-instance TA with its own Flex-Mem owner id."""
        if ta_class.uuid in self._tas:
            raise ConfigError(f"TA {ta_class.uuid} is already installed")
        owner = next(self._owner_ids)
        if owner > LAST_TA_OWNER:
            raise ConfigError("no Flex-Mem owner id left for another TA")
        ta = ta_class(TaServices(self, owner))
        self._tas[ta_class.uuid] = ta
        return ta

    @property
    def open_sessions(self) -> int:
        return len(self._sessions)

    # ----- the forwarded SMC -----
    def entry(self, msg_pa: int) -> tuple[WorkRecord, int]:
        """Handle one message at ``msg_pa``; returns the work done and x1 (always 0)."""
        before = self.port.work.copy()
        try:
            raw = self.port.read_shared(msg_pa, MSG_BYTES)  # copy first ...
        except SMCError:
            return self.port.work - before, 0  # no message to answer in
        msg = self._serve(raw)  # ... then decode and check the private copy
        # The client may have handed its own message page away meanwhile: nothing to answer.
        with contextlib.suppress(SMCError):
            self.port.write_shared(msg_pa, msg.encode())
        return self.port.work - before, 0

    def _serve(self, raw: bytes) -> Message:
        try:
            msg = decode(raw)
        except TeeError as error:
            return _failed(Message(MsgCommand.INVOKE_COMMAND), error.result, error.origin)
        try:
            self._dispatch(msg)
            msg.result, msg.origin = TeeResult.SUCCESS, Origin.TRUSTED_APP
        except TeeError as error:
            _failed(msg, error.result, error.origin)
        except FlexServeError as error:
            _failed(msg, result_of(error), Origin.TEE)
        return msg

    def _dispatch(self, msg: Message) -> None:
        handlers = {
            MsgCommand.OPEN_SESSION: self._open_session,
            MsgCommand.INVOKE_COMMAND: self._invoke,
            MsgCommand.CLOSE_SESSION: self._close_session,
        }
        handlers[msg.command](msg)

    # ----- commands -----
    def _open_session(self, msg: Message) -> None:
        ta = self._tas.get(msg.ta_uuid)
        if ta is None:
            raise TeeError(TeeResult.ERROR_ITEM_NOT_FOUND)
        params = self._copy_in(msg.params)
        state = ta.open_session(params)
        session_id = next(self._session_ids)
        self._sessions[session_id] = _Session(ta, state)
        msg.session = session_id
        self._copy_out(msg.params, params)

    def _invoke(self, msg: Message) -> None:
        session = self._session(msg.session)
        params = self._copy_in(msg.params)
        try:
            session.ta.invoke(session.state, msg.function, params)
        finally:
            self._report_sizes(msg.params, params)
        self._copy_out(msg.params, params)

    def _close_session(self, msg: Message) -> None:
        session = self._session(msg.session)
        del self._sessions[msg.session]
        session.ta.close_session(session.state)

    def _session(self, session_id: int) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise TeeError(TeeResult.ERROR_ITEM_NOT_FOUND)
        return session

    # ----- parameters: copy in, copy out -----
    def _copy_in(self, wire: list[MsgParam]) -> list[TaParam]:
        return [self._copy_in_one(p) for p in wire]

    def _copy_in_one(self, p: MsgParam) -> TaParam:
        if not p.type.is_memref:
            return TaParam(p.type, p.a if p.type.is_input else 0, p.b if p.type.is_input else 0)
        if p.b > self.max_memref_bytes:
            raise TeeError(TeeResult.ERROR_BAD_PARAMETERS)
        try:
            self.port.check_shared(p.a, p.b)
            data = bytearray(self.port.read_shared(p.a, p.b)) if p.type.is_input else None
        except SMCError:
            raise TeeError(TeeResult.ERROR_BAD_PARAMETERS) from None
        return TaParam(p.type, data=data, capacity_bytes=p.b)

    def _copy_out(self, wire: list[MsgParam], params: list[TaParam]) -> None:
        for p, ta_param in zip(wire, params, strict=True):
            if not p.type.is_output:
                continue
            if p.type.is_value:
                p.a, p.b = ta_param.a, ta_param.b
            elif ta_param.data is not None:
                self.port.write_shared(p.a, bytes(ta_param.data))
                p.b = len(ta_param.data)

    @staticmethod
    def _report_sizes(wire: list[MsgParam], params: list[TaParam]) -> None:
        for p, ta_param in zip(wire, params, strict=True):
            if ta_param.needed_bytes is not None:
                p.b = ta_param.needed_bytes

    # ----- secure memory for TAs -----
    def alloc_secure(self, owner: int, size_bytes: int) -> SecureAllocation:
        """Flex-Mem from the normal world, verified with the monitor, mapped into the TA."""
        if self.rpc is None:
            raise OutOfMemoryError("no normal-world Flex-Mem manager is connected")
        ipa_pages = self.rpc.rsmem_alloc(owner, size_bytes)
        try:
            frames = self.port.frames_at_ipas(owner, ipa_pages)
        except SMCError:
            raise SecurityError() from None  # the normal world lied about what it protected
        self.port.map_frames(owner, frames)
        return SecureAllocation(frames, self.port.buffer(owner, frames), size_bytes)

    def free_secure(self, owner: int, allocation: SecureAllocation) -> None:
        """Scrub, unmap and hand the frames back through the normal world."""
        assert self.rpc is not None
        self.rpc.rsmem_free(owner, self.surrender_secure(owner, allocation))

    def surrender_secure(self, owner: int, allocation: SecureAllocation) -> np.ndarray:
        """Scrub and unmap a TA's frames; returns their IPA pages for the normal world."""
        ipa_pages = self.port.ipas_of(owner, allocation.frames)
        self.port.scrub_frames(owner, allocation.frames)
        self.port.unmap_frames(owner, allocation.frames)
        return ipa_pages


    # ----- contiguous TZASC memory for TAs (the strawman designs) -----
    def alloc_contiguous(self, owner: int, size_bytes: int) -> ContiguousAllocation:
        """A CMA range from the normal world, made secure as one TZASC region."""
        if self.contig is None:
            raise OutOfMemoryError("no normal-world contiguous memory service is connected")
        slot = self._free_slot()
        first_pfn, pages = self.contig.contig_alloc(owner, size_bytes)
        try:  # the monitor refuses a range that is not ordinary normal memory
            self.port.tzasc_assign(slot, first_pfn, pages)
        except SMCError:
            raise SecurityError() from None
        self._tzasc_slots[slot] = owner
        return ContiguousAllocation(slot, first_pfn, pages)

    def grow_contiguous(self, owner: int, allocation: ContiguousAllocation,
                        extra_bytes: int) -> None:
        """Grow the region in place by at least ``extra_bytes`` (whole CMA blocks)."""
        self._require_slot(owner, allocation)
        assert self.contig is not None
        pages = self.contig.contig_grow(owner, allocation.base_frame, extra_bytes)
        try:
            self.port.tzasc_extend(allocation.slot, pages - allocation.frame_count)
        except SMCError:
            raise SecurityError() from None
        allocation.frame_count = pages

    def free_contiguous(self, owner: int, allocation: ContiguousAllocation) -> None:
        """The monitor scrubs and releases the region; the range goes back to the OS."""
        self._require_slot(owner, allocation)
        assert self.contig is not None
        self.port.tzasc_release(allocation.slot)
        del self._tzasc_slots[allocation.slot]
        self.contig.contig_free(owner, allocation.base_frame)

    def _free_slot(self) -> int:
        for slot in range(TEE_TZASC_REGION + 1, TZASC_REGION_COUNT):
            if slot not in self._tzasc_slots:
                return slot
        raise OutOfMemoryError("every TZASC region is in use")

    def _require_slot(self, owner: int, allocation: ContiguousAllocation) -> None:
        if self._tzasc_slots.get(allocation.slot) != owner:
            raise ConfigError("this TZASC region is not the TA's")


def _failed(msg: Message, result: TeeResult, origin: Origin) -> Message:
    msg.result, msg.origin = result, origin
    return msg


def boot_trusted_os(platform: Platform, rpc: NormalWorldRpc | None = None,
                    contig: ContigRpc | None = None) -> TrustedOS:
    """Create the trusted OS of a booted platform and register its SMC entry."""
    tos = TrustedOS(platform.secure.port, rpc, contig=contig)
    platform.monitor.dispatcher.register_trusted_os(tos.entry)
    return tos
