"""Trusted Applications: the base class and what a TA sees of its parameters.

A TA is a class with a UUID and a table of commands. The trusted OS hands it parameters that
are already private copies in secure memory (:class:`TaParam`), never views of shared memory,
so a TA may check a value and then use it without the normal world changing it in between.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from flexserve.tee.gp import Origin, ParamType, TeeError, TeeResult


@dataclass
class TaParam:
    """One parameter as the TA sees it.

    Values use ``a`` and ``b``. A memory reference has ``data``: for input it holds a private
    copy of the client's bytes; for output the TA fills it (at most ``capacity_bytes``) or sets
    ``needed_bytes`` and fails with ERROR_SHORT_BUFFER.
    """

    type: ParamType
    a: int = 0
    b: int = 0
    data: bytearray | None = None
    capacity_bytes: int = 0
    needed_bytes: int | None = None

    def value(self) -> tuple[int, int]:
        if not self.type.is_value or not self.type.is_input:
            raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP)
        return self.a, self.b

    def input_bytes(self) -> bytes:
        if not self.type.is_memref or not self.type.is_input or self.data is None:
            raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP)
        return bytes(self.data)

    def set_value(self, a: int, b: int = 0) -> None:
        if not self.type.is_value or not self.type.is_output:
            raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP)
        self.a, self.b = a, b

    def set_output(self, payload: bytes) -> None:
        """Fill an output memory reference; too small a buffer ends the call SHORT_BUFFER."""
        if not self.type.is_memref or not self.type.is_output:
            raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP)
        if len(payload) > self.capacity_bytes:
            self.needed_bytes = len(payload)
            raise TeeError(TeeResult.ERROR_SHORT_BUFFER, Origin.TRUSTED_APP)
        self.data = bytearray(payload)


def expect_types(params: list[TaParam], *types: ParamType) -> None:
    """Refuse a call whose parameter types are not exactly ``types`` (then NONE)."""
    given = [p.type for p in params] + [ParamType.NONE] * (len(types) - len(params))
    if given[: len(types)] != list(types) or any(t != ParamType.NONE for t in given[len(types):]):
        raise TeeError(TeeResult.ERROR_BAD_PARAMETERS, Origin.TRUSTED_APP)


CommandHandler = Callable[[Any, list[TaParam]], None]


class TrustedApplication:
    """Base of every TA. Subclasses set ``uuid`` and fill ``commands`` in ``__init__``.

    ``services`` is the trusted OS's offer to this TA instance (its Flex-Mem owner id,
    secure memory allocation); see :class:`flexserve.tee.trusted_os.TaServices`.
    """

    uuid: ClassVar[uuid.UUID]

    def __init__(self, services: Any) -> None:
        self.services = services
        self.commands: dict[int, CommandHandler] = {}

    def open_session(self, params: list[TaParam]) -> Any:
        """Return per-session state; raise TeeError to refuse the session."""
        del params
        return None

    def invoke(self, session: Any, command: int, params: list[TaParam]) -> None:
        handler = self.commands.get(command)
        if handler is None:
            raise TeeError(TeeResult.ERROR_NOT_SUPPORTED, Origin.TRUSTED_APP)
        handler(session, params)

    def close_session(self, session: Any) -> None:
        del session
