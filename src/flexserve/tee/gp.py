"""GlobalPlatform TEE vocabulary: result codes, origins, parameter types.

Values follow the GlobalPlatform TEE Client API specification (v1.0), so a reader who knows
OP-TEE or any GP-compliant TEE recognises them.
"""

from __future__ import annotations

import enum

MAX_PARAMS = 4


class TeeResult(enum.IntEnum):
    SUCCESS = 0x0000_0000
    ERROR_GENERIC = 0xFFFF_0000
    ERROR_ACCESS_DENIED = 0xFFFF_0001
    ERROR_EXCESS_DATA = 0xFFFF_0004
    ERROR_BAD_FORMAT = 0xFFFF_0005
    ERROR_BAD_PARAMETERS = 0xFFFF_0006
    ERROR_BAD_STATE = 0xFFFF_0007
    ERROR_ITEM_NOT_FOUND = 0xFFFF_0008
    ERROR_NOT_SUPPORTED = 0xFFFF_000A
    ERROR_OUT_OF_MEMORY = 0xFFFF_000C
    ERROR_BUSY = 0xFFFF_000D
    ERROR_COMMUNICATION = 0xFFFF_000E
    ERROR_SECURITY = 0xFFFF_000F
    ERROR_SHORT_BUFFER = 0xFFFF_0010


class Origin(enum.IntEnum):
    """Which layer produced a result code."""

    API = 1
    COMMS = 2
    TEE = 3
    TRUSTED_APP = 4


class ParamType(enum.IntEnum):
    NONE = 0
    VALUE_INPUT = 1
    VALUE_OUTPUT = 2
    VALUE_INOUT = 3
    MEMREF_INPUT = 5
    MEMREF_OUTPUT = 6
    MEMREF_INOUT = 7

    @property
    def is_value(self) -> bool:
        return self in (ParamType.VALUE_INPUT, ParamType.VALUE_OUTPUT, ParamType.VALUE_INOUT)

    @property
    def is_memref(self) -> bool:
        return self in (ParamType.MEMREF_INPUT, ParamType.MEMREF_OUTPUT, ParamType.MEMREF_INOUT)

    @property
    def is_input(self) -> bool:
        return self in (ParamType.VALUE_INPUT, ParamType.VALUE_INOUT,
                        ParamType.MEMREF_INPUT, ParamType.MEMREF_INOUT)

    @property
    def is_output(self) -> bool:
        return self in (ParamType.VALUE_OUTPUT, ParamType.VALUE_INOUT,
                        ParamType.MEMREF_OUTPUT, ParamType.MEMREF_INOUT)


class MsgCommand(enum.IntEnum):
    """What a message asks the trusted OS to do."""

    OPEN_SESSION = 0
    INVOKE_COMMAND = 1
    CLOSE_SESSION = 2


class TeeError(Exception):
    """Raised inside the secure world to end a call with a GP result code."""

    def __init__(self, result: TeeResult, origin: Origin = Origin.TEE) -> None:
        super().__init__(f"{result.name} (origin {origin.name})")
        self.result = result
        self.origin = origin
