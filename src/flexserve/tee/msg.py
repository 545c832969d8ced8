"""The message a normal-world client places in shared memory for one trusted OS call.

Fixed layout, little endian, 168 bytes (one page holds it):

| offset | size | field |
|---|---|---|
| 0 | 4 | command (MsgCommand) |
| 4 | 4 | function: the TA command id for INVOKE_COMMAND |
| 8 | 4 | session id (out for OPEN_SESSION, in otherwise) |
| 12 | 4 | result (TeeResult, out) |
| 16 | 4 | result origin (Origin, out) |
| 20 | 4 | number of parameters used, at most 4 |
| 24 | 16 | TA UUID (OPEN_SESSION only) |
| 40 | 4 x 32 | parameters: type u64, a u64, b u64, c u64 |

A value parameter carries ``a`` and ``b``. A memory-reference parameter carries ``a`` = the
physical address of a buffer in normal memory and ``b`` = its size in bytes; on return ``b``
holds the size the TA produced (or needs, with ERROR_SHORT_BUFFER).

The trusted OS copies the whole message into secure memory before it reads any field, then
checks every field of its copy: the normal world may rewrite the shared page at any time.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

from flexserve.tee.gp import MAX_PARAMS, MsgCommand, Origin, ParamType, TeeError, TeeResult

_HEADER = struct.Struct("<6I16s")
_PARAM = struct.Struct("<4Q")
NIL_UUID = uuid.UUID(int=0)
MSG_BYTES = _HEADER.size + MAX_PARAMS * _PARAM.size


@dataclass
class MsgParam:
    type: ParamType = ParamType.NONE
    a: int = 0
    b: int = 0
    c: int = 0


@dataclass
class Message:
    command: MsgCommand
    function: int = 0
    session: int = 0
    result: int = TeeResult.SUCCESS
    origin: int = Origin.API
    ta_uuid: uuid.UUID = NIL_UUID
    params: list[MsgParam] = field(default_factory=list)

    def encode(self) -> bytes:
        if len(self.params) > MAX_PARAMS:
            raise ValueError(f"at most {MAX_PARAMS} parameters")
        padded = self.params + [MsgParam()] * (MAX_PARAMS - len(self.params))
        header = _HEADER.pack(int(self.command), self.function, self.session, int(self.result),
                              int(self.origin), len(self.params), self.ta_uuid.bytes)
        return header + b"".join(_PARAM.pack(int(p.type), p.a, p.b, p.c) for p in padded)


def _enum(kind: type, raw: int):  # -> enum member
    try:
        return kind(raw)
    except ValueError:
        raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.COMMS) from None


def decode(raw: bytes) -> Message:
    """Parse a private copy of a message; malformed fields end the call with BAD_PARAMETERS."""
    if len(raw) != MSG_BYTES:
        raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.COMMS)
    command, function, session, result, origin, count, uuid_bytes = _HEADER.unpack_from(raw)
    if count > MAX_PARAMS:
        raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.COMMS)
    params = []
    for index in range(count):
        kind, a, b, c = _PARAM.unpack_from(raw, _HEADER.size + index * _PARAM.size)
        params.append(MsgParam(_enum(ParamType, kind), a, b, c))
    return Message(_enum(MsgCommand, command), function, session, result, origin,
                   uuid.UUID(bytes=uuid_bytes), params)
