"""Secure-side buffer handling: copy in before use, write out only verified bytes, scrub.

Copy then verify (OP-TEE style): bytes handed in from the normal world may change while the
secure side looks at them (a shared buffer the OS still maps). Every check and every
decryption therefore runs on a private immutable copy made by :func:`copy_in`.

Plaintext goes to an :class:`OutBuffer`: either a writable byte view (``bytearray``,
``memoryview``, numpy array) or a :class:`ByteSink` such as the TA's
:class:`~flexserve.monitor.secure_port.FlexBuffer` over Flex-Mem frames.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from flexserve.errors import ConfigError

ByteSource = bytes | bytearray | memoryview
_ZERO_BLOCK_BYTES = 1 << 20
_ZEROS = bytes(_ZERO_BLOCK_BYTES)


@runtime_checkable
class ByteSink(Protocol):
    """Byte-addressed secure memory that is written through calls (e.g. a FlexBuffer)."""

    @property
    def size_bytes(self) -> int: ...

    def write(self, offset: int, data: bytes) -> None: ...


def byte_length(data: ByteSource) -> int:
    """Length in bytes, without copying."""
    return memoryview(data).nbytes


def copy_in(data: ByteSource) -> bytes:
    """A private immutable snapshot of ``data`` (``bytes`` are already immutable)."""
    if type(data) is bytes:
        return data
    return memoryview(data).tobytes()


def byte_view(data: ByteSource) -> memoryview:
    """``data`` as a flat byte view (no copy); still normal-world memory, so copy before use."""
    view = memoryview(data)
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def writable_view(out: ByteSource) -> memoryview:
    """``out`` as a flat writable byte view; a read-only buffer is the caller's error."""
    view = memoryview(out)
    if view.readonly:
        raise ConfigError("the output buffer is read-only")
    if not view.contiguous:
        raise ConfigError("the output buffer must be contiguous")
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


def zero(view: memoryview) -> None:
    """Scrub ``view`` in place."""
    for start in range(0, len(view), _ZERO_BLOCK_BYTES):
        end = min(start + _ZERO_BLOCK_BYTES, len(view))
        view[start:end] = _ZEROS[: end - start]


class OutBuffer:
    """The caller's destination for verified plaintext; scrubbed as a whole on failure."""

    def __init__(self, out: ByteSource | ByteSink) -> None:
        if isinstance(out, ByteSink):
            self._sink: ByteSink | None = out
            self._view: memoryview | None = None
            self.size_bytes = int(out.size_bytes)
        else:
            self._sink, self._view = None, writable_view(out)
            self.size_bytes = len(self._view)

    def write(self, offset_bytes: int, data: bytes) -> None:
        if self._view is not None:
            self._view[offset_bytes : offset_bytes + len(data)] = data
        else:
            assert self._sink is not None
            self._sink.write(offset_bytes, data)

    def zero(self) -> None:
        if self._view is not None:
            zero(self._view)
            return
        for start in range(0, self.size_bytes, _ZERO_BLOCK_BYTES):
            self.write(start, _ZEROS[: min(_ZERO_BLOCK_BYTES, self.size_bytes - start)])
