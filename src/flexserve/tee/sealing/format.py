"""Byte layout of a sealed model: the fixed header and the manifest.

All integers are little-endian. ``docs/sealed-format.md`` documents every byte; this module
is its single implementation. Parsing runs on secure copies only and fails closed: any
malformed field raises the detail-free :class:`SecurityError`.

Sizes taken from a header are bounded here (``MAX_MANIFEST_BYTES``) before anything uses
them, so a forged size cannot make the secure side allocate or read before authentication.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from flexserve.errors import SecurityError

MAGIC = b"FXSEALED"
FORMAT_VERSION = 1
HEADER_BYTES = 192
TAG_BYTES = 16
MODEL_ID_BYTES = 32
DEVICE_ID_BYTES = 16
NONCE_PREFIX_BYTES = 4
WRAP_NONCE_BYTES = 12
DATA_KEY_BYTES = 32
WRAPPED_KEY_BYTES = DATA_KEY_BYTES + TAG_BYTES
HEADER_MAC_BYTES = 32

MAX_MANIFEST_BYTES = 1 << 20
MAX_UNITS = 4096
MAX_UNIT_NAME_BYTES = 64
MAX_GGUF_BYTES = 1 << 40
PAGE_BYTES = 4096
MIN_CHUNK_BYTES = PAGE_BYTES
MAX_CHUNK_BYTES = 256 << 20
DEFAULT_CHUNK_BYTES = 4 << 20
META_UNIT = "meta"

# (name, struct code) in file order; offsets follow from the codes.
_HEADER_LAYOUT: tuple[tuple[str, str], ...] = (
    ("magic", "8s"),
    ("format_version", "H"),
    ("header_bytes", "H"),
    ("flags", "I"),
    ("model_id", f"{MODEL_ID_BYTES}s"),
    ("model_version", "Q"),
    ("device_id", f"{DEVICE_ID_BYTES}s"),
    ("nonce_prefix", f"{NONCE_PREFIX_BYTES}s"),
    ("wrap_nonce", f"{WRAP_NONCE_BYTES}s"),
    ("wrapped_data_key", f"{WRAPPED_KEY_BYTES}s"),
    ("manifest_bytes", "Q"),
    ("manifest_tag", f"{TAG_BYTES}s"),
    ("header_mac", f"{HEADER_MAC_BYTES}s"),
)
_HEADER = struct.Struct("<" + "".join(code for _, code in _HEADER_LAYOUT))


def _field_spans() -> dict[str, tuple[int, int]]:
    spans, offset = {}, 0
    for name, code in _HEADER_LAYOUT:
        size = struct.calcsize("<" + code)
        spans[name] = (offset, size)
        offset += size
    return spans


HEADER_FIELDS: dict[str, tuple[int, int]] = _field_spans()
"""Header field name -> (offset, size) in bytes."""

WRAP_AAD_END = HEADER_FIELDS["wrap_nonce"][0]
MANIFEST_AAD_END = HEADER_FIELDS["manifest_tag"][0]
MAC_INPUT_END = HEADER_FIELDS["header_mac"][0]
assert _HEADER.size == HEADER_BYTES


@dataclass(frozen=True)
class Header:
    """The fixed-size header, as parsed from (or to be written as) ``HEADER_BYTES`` bytes."""

    model_id: bytes
    model_version: int
    device_id: bytes
    nonce_prefix: bytes
    wrap_nonce: bytes = bytes(WRAP_NONCE_BYTES)
    wrapped_data_key: bytes = bytes(WRAPPED_KEY_BYTES)
    manifest_bytes: int = 0
    manifest_tag: bytes = bytes(TAG_BYTES)
    header_mac: bytes = bytes(HEADER_MAC_BYTES)

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC, FORMAT_VERSION, HEADER_BYTES, 0, self.model_id, self.model_version,
            self.device_id, self.nonce_prefix, self.wrap_nonce, self.wrapped_data_key,
            self.manifest_bytes, self.manifest_tag, self.header_mac,
        )

    def wrap_aad(self) -> bytes:
        """Bytes bound to the wrapped data key: magic .. nonce prefix."""
        return self.pack()[:WRAP_AAD_END]

    def manifest_aad(self) -> bytes:
        """Bytes bound to the manifest: everything before the manifest tag."""
        return self.pack()[:MANIFEST_AAD_END]

    def mac_input(self) -> bytes:
        """Bytes covered by the header MAC: everything before the MAC."""
        return self.pack()[:MAC_INPUT_END]


def parse_header(raw: bytes) -> Header:
    """Parse a secure copy of the header; fixed fields and the manifest cap are checked."""
    if len(raw) != HEADER_BYTES:
        raise SecurityError()
    (magic, version, header_bytes, flags, model_id, model_version, device_id, nonce_prefix,
     wrap_nonce, wrapped, manifest_bytes, manifest_tag, mac) = _HEADER.unpack(raw)
    if (magic, version, header_bytes, flags) != (MAGIC, FORMAT_VERSION, HEADER_BYTES, 0):
        raise SecurityError()
    if not 0 < manifest_bytes <= MAX_MANIFEST_BYTES:
        raise SecurityError()
    header = Header(model_id, model_version, device_id, nonce_prefix, wrap_nonce, wrapped,
                    manifest_bytes, manifest_tag, mac)
    if header.pack() != raw:  # the authenticated bytes are exactly the bytes received
        raise SecurityError()
    return header


@dataclass(frozen=True)
class UnitEntry:
    """One unit in load order: its name and plaintext size."""

    name: str
    n_bytes: int


@dataclass(frozen=True)
class Manifest:
    """The authenticated and encrypted list of units and the chunk size."""

    chunk_bytes: int
    gguf_bytes: int
    content_sha256: bytes
    units: tuple[UnitEntry, ...]

    def pack(self) -> bytes:
        head = _MANIFEST_HEAD.pack(MANIFEST_MAGIC, self.chunk_bytes, len(self.units), 0,
                                   self.gguf_bytes, self.content_sha256)
        return head + b"".join(_pack_unit(u, self.chunk_bytes) for u in self.units)


MANIFEST_MAGIC = b"FXMF"
_MANIFEST_HEAD = struct.Struct("<4sIIIQ32s")
_NAME_LEN = struct.Struct("<H")
_UNIT_TAIL = struct.Struct("<QI")


def chunk_count(n_bytes: int, chunk_bytes: int) -> int:
    return math.ceil(n_bytes / chunk_bytes)


def _pack_unit(unit: UnitEntry, chunk_bytes: int) -> bytes:
    name = unit.name.encode("ascii")
    tail = _UNIT_TAIL.pack(unit.n_bytes, chunk_count(unit.n_bytes, chunk_bytes))
    return _NAME_LEN.pack(len(name)) + name + tail


def check_chunk_bytes(chunk_bytes: int) -> bool:
    return MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES and chunk_bytes % PAGE_BYTES == 0


class _Cursor:
    """Strict reading of a decrypted manifest; anything unexpected is a SecurityError."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0

    def take(self, n_bytes: int) -> bytes:
        if n_bytes > len(self.raw) - self.pos:
            raise SecurityError()
        piece = self.raw[self.pos : self.pos + n_bytes]
        self.pos += n_bytes
        return piece

    def unpack(self, fmt: struct.Struct) -> tuple:
        return fmt.unpack(self.take(fmt.size))


def _parse_unit(cursor: _Cursor, chunk_bytes: int) -> UnitEntry:
    (name_len,) = cursor.unpack(_NAME_LEN)
    if not 0 < name_len <= MAX_UNIT_NAME_BYTES:
        raise SecurityError()
    try:
        name = cursor.take(name_len).decode("ascii")
    except UnicodeDecodeError:
        raise SecurityError() from None
    n_bytes, n_chunks = cursor.unpack(_UNIT_TAIL)
    if not 0 < n_bytes <= MAX_GGUF_BYTES or n_chunks != chunk_count(n_bytes, chunk_bytes):
        raise SecurityError()
    return UnitEntry(name, n_bytes)


def parse_manifest(raw: bytes) -> Manifest:
    """Parse an authenticated, decrypted manifest; refuse any inconsistency."""
    cursor = _Cursor(raw)
    magic, chunk_bytes, n_units, reserved, gguf_bytes, digest = cursor.unpack(_MANIFEST_HEAD)
    if magic != MANIFEST_MAGIC or reserved != 0 or not check_chunk_bytes(chunk_bytes):
        raise SecurityError()
    if not 0 < n_units <= MAX_UNITS or not 0 < gguf_bytes <= MAX_GGUF_BYTES:
        raise SecurityError()
    units = tuple(_parse_unit(cursor, chunk_bytes) for _ in range(n_units))
    names = [u.name for u in units]
    if cursor.pos != len(raw) or names[0] != META_UNIT or len(set(names)) != len(names):
        raise SecurityError()
    return Manifest(chunk_bytes, gguf_bytes, digest, units)
