"""A strict reader for GGUF v2/v3 model files.

GGUF layout (little-endian): magic ``GGUF``, ``u32`` version, ``u64`` tensor count, ``u64``
metadata count, the metadata key/value pairs, the tensor infos, padding to the alignment, then
the tensor data. The file is untrusted input: every count, length and offset is checked against
the bytes that are actually there before anything is allocated, and every violation raises
:class:`ModelFormatError` naming what is wrong and where.
"""

from __future__ import annotations

import itertools
import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flexserve.engine.ggml_types import GGML_TYPES, tensor_n_bytes, type_name
from flexserve.errors import (
    ModelFormatError,
    ModelNotFoundError,
    UnsupportedQuantizationError,
)

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT_BYTES = 32
MAX_TENSOR_DIMS = 4
MAX_ARRAY_DEPTH = 4
MAX_NAME_BYTES = 65_535

# Metadata value type ids.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL = 0, 1, 2, 3, 4, 5, 6, 7
STRING, ARRAY, UINT64, INT64, FLOAT64 = 8, 9, 10, 11, 12

_SCALAR_DTYPES: dict[int, str] = {
    UINT8: "<u1", INT8: "<i1", UINT16: "<u2", INT16: "<i2", UINT32: "<u4", INT32: "<i4",
    FLOAT32: "<f4", BOOL: "<u1", UINT64: "<u8", INT64: "<i8", FLOAT64: "<f8",
}
_STRING_MIN_BYTES = 8  # a string is at least its u64 length
_ARRAY_MIN_BYTES = 12  # an array is at least its u32 element type and u64 count


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives in the file and how it is stored.

    ``shape`` is in row-major numpy order, e.g. ``(n_out, n_in)`` for a weight matrix (GGUF
    stores dimensions innermost first; they are reversed here). ``offset_bytes`` is absolute.
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset_bytes: int
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n


class _Reader:
    """A bounds-checked cursor over a byte buffer."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.buf) - self.pos

    def need(self, n_bytes: int, what: str) -> None:
        if n_bytes < 0 or n_bytes > self.remaining:
            raise ModelFormatError(
                f"GGUF truncated: {what} needs {n_bytes} bytes at offset {self.pos}, "
                f"only {self.remaining} remain"
            )

    def unpack(self, fmt: str, what: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", what))

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", what))

    def string(self, what: str) -> str:
        n_bytes = self.u64(f"length of {what}")
        self.need(n_bytes, what)
        raw = bytes(self.buf[self.pos : self.pos + n_bytes])
        self.pos += n_bytes
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFormatError(f"GGUF {what} is not valid UTF-8") from exc

    def count(self, min_item_bytes: int, what: str) -> int:
        """A u64 item count, refused if the items could not possibly fit in what remains."""
        n = self.u64(what)
        if n * min_item_bytes > self.remaining:
            raise ModelFormatError(
                f"GGUF {what} = {n} is absurd: it needs at least {n * min_item_bytes} bytes "
                f"but only {self.remaining} remain"
            )
        return n


def _read_scalar(reader: _Reader, value_type: int, what: str) -> Any:
    dtype = np.dtype(_SCALAR_DTYPES[value_type])
    reader.need(dtype.itemsize, what)
    value = np.frombuffer(reader.buf, dtype, 1, reader.pos)[0]
    reader.pos += dtype.itemsize
    if value_type == BOOL:
        return _as_bool(int(value), what)
    return value.item()


def _as_bool(raw: int, what: str) -> bool:
    if raw not in (0, 1):
        raise ModelFormatError(f"GGUF {what} is a bool with invalid byte {raw}")
    return bool(raw)


def _min_value_bytes(value_type: int) -> int:
    if value_type in _SCALAR_DTYPES:
        return np.dtype(_SCALAR_DTYPES[value_type]).itemsize
    return _STRING_MIN_BYTES if value_type == STRING else _ARRAY_MIN_BYTES


def _read_array(reader: _Reader, what: str, depth: int) -> list[Any]:
    if depth >= MAX_ARRAY_DEPTH:
        raise ModelFormatError(f"GGUF {what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
    elem_type = reader.u32(f"element type of {what}")
    _check_value_type(elem_type, what)
    n = reader.count(_min_value_bytes(elem_type), f"element count of {what}")
    if elem_type in _SCALAR_DTYPES:
        dtype = np.dtype(_SCALAR_DTYPES[elem_type])
        values = np.frombuffer(reader.buf, dtype, n, reader.pos)
        reader.pos += n * dtype.itemsize
        if elem_type == BOOL:
            return [_as_bool(int(v), what) for v in values]
        return values.tolist()
    return [_read_value(reader, elem_type, f"{what}[{i}]", depth + 1) for i in range(n)]


def _check_value_type(value_type: int, what: str) -> None:
    if value_type not in _SCALAR_DTYPES and value_type not in (STRING, ARRAY):
        raise ModelFormatError(f"GGUF {what} has unknown value type {value_type}")


def _read_value(reader: _Reader, value_type: int, what: str, depth: int = 0) -> Any:
    _check_value_type(value_type, what)
    if value_type == STRING:
        return reader.string(what)
    if value_type == ARRAY:
        return _read_array(reader, what, depth)
    return _read_scalar(reader, value_type, what)


def _read_header(reader: _Reader) -> tuple[int, int, int]:
    reader.need(4, "magic")
    magic = bytes(reader.buf[0:4])
    if magic != GGUF_MAGIC:
        raise ModelFormatError(f"not a GGUF file: bad magic {magic!r} (expected {GGUF_MAGIC!r})")
    reader.pos = 4
    version = reader.u32("version")
    if version not in SUPPORTED_VERSIONS:
        hint = " (big-endian files are not supported)" if version >= 1 << 16 else ""
        raise ModelFormatError(f"unsupported GGUF version {version}{hint}")
    n_tensors = reader.count(24, "tensor count")  # a tensor info is >= 24 bytes
    n_kv = reader.count(13, "metadata count")  # a key/value pair is >= 13 bytes
    return version, n_tensors, n_kv


def _read_metadata(reader: _Reader, n_kv: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = reader.string(f"metadata key #{i}")
        if key in metadata:
            raise ModelFormatError(f"GGUF metadata key {key!r} appears twice")
        value_type = reader.u32(f"value type of {key!r}")
        metadata[key] = _read_value(reader, value_type, f"metadata {key!r}")
    return metadata


@dataclass(frozen=True)
class _RawTensor:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    rel_offset_bytes: int


def _read_tensor_info(reader: _Reader, index: int) -> _RawTensor:
    name = reader.string(f"name of tensor #{index}")
    if not name or len(name) > MAX_NAME_BYTES:
        raise ModelFormatError(f"GGUF tensor #{index} has an invalid name length {len(name)}")
    n_dims = reader.u32(f"dimension count of {name!r}")
    if not 1 <= n_dims <= MAX_TENSOR_DIMS:
        raise ModelFormatError(f"GGUF tensor {name!r} has {n_dims} dimensions")
    dims = [reader.u64(f"dimension {d} of {name!r}") for d in range(n_dims)]
    if any(d == 0 for d in dims):
        raise ModelFormatError(f"GGUF tensor {name!r} has an empty dimension: {dims}")
    ggml_type_id = reader.u32(f"type of {name!r}")
    rel_offset = reader.u64(f"offset of {name!r}")
    return _RawTensor(name, tuple(reversed(dims)), ggml_type_id, rel_offset)


def _alignment_bytes(metadata: dict[str, Any]) -> int:
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT_BYTES)
    if isinstance(alignment, bool) or not isinstance(alignment, int):
        raise ModelFormatError(f"general.alignment must be an integer, got {alignment!r}")
    if alignment <= 0 or alignment & (alignment - 1):
        raise ModelFormatError(f"general.alignment must be a power of two, got {alignment}")
    return alignment


def _place_tensor(raw: _RawTensor, data_start: int, alignment: int, size: int) -> TensorInfo:
    if raw.rel_offset_bytes % alignment:
        raise ModelFormatError(
            f"tensor {raw.name!r} offset {raw.rel_offset_bytes} is not {alignment}-byte aligned"
        )
    if raw.ggml_type not in GGML_TYPES:
        raise UnsupportedQuantizationError(
            f"tensor {raw.name!r} uses unsupported GGML type {type_name(raw.ggml_type)}"
        )
    n_bytes = tensor_n_bytes(raw.ggml_type, raw.shape)
    offset = data_start + raw.rel_offset_bytes
    if offset + n_bytes > size:
        raise ModelFormatError(
            f"tensor {raw.name!r} spans bytes {offset}..{offset + n_bytes} "
            f"beyond the end of the file ({size} bytes)"
        )
    return TensorInfo(raw.name, raw.shape, raw.ggml_type, offset, n_bytes)


def _check_no_overlap(tensors: list[TensorInfo]) -> None:
    ordered = sorted(tensors, key=lambda t: t.offset_bytes)
    for prev, cur in itertools.pairwise(ordered):
        if cur.offset_bytes < prev.offset_bytes + prev.n_bytes:
            raise ModelFormatError(f"tensors {prev.name!r} and {cur.name!r} overlap in the file")


class GGUFFile:
    """A parsed GGUF file: metadata, tensor directory and access to the tensor bytes."""

    def __init__(
        self,
        buf: memoryview,
        path: Path | None = None,
        closer: Callable[[], None] | None = None,
        page_dropper: Callable[[], None] | None = None,
    ) -> None:
        self._buf = buf
        self.path = path
        self._closer = closer
        self._page_dropper = page_dropper
        self._closed = False
        reader = _Reader(buf)
        self.version, n_tensors, n_kv = _read_header(reader)
        self.metadata: dict[str, Any] = _read_metadata(reader, n_kv)
        self.alignment_bytes = _alignment_bytes(self.metadata)
        raws = [_read_tensor_info(reader, i) for i in range(n_tensors)]
        self.data_offset_bytes = _round_up(reader.pos, self.alignment_bytes)
        self.tensors: dict[str, TensorInfo] = self._place_all(raws)

    def _place_all(self, raws: list[_RawTensor]) -> dict[str, TensorInfo]:
        if raws and self.data_offset_bytes > len(self._buf):
            raise ModelFormatError("GGUF truncated: the tensor data section is missing")
        tensors: dict[str, TensorInfo] = {}
        for raw in raws:
            if raw.name in tensors:
                raise ModelFormatError(f"tensor {raw.name!r} appears twice")
            tensors[raw.name] = _place_tensor(
                raw, self.data_offset_bytes, self.alignment_bytes, len(self._buf)
            )
        _check_no_overlap(list(tensors.values()))
        return tensors

    @classmethod
    def open(cls, path: str | Path) -> GGUFFile:
        """Parse the file at ``path`` through a read-only memory map."""
        path = Path(path)
        if not path.is_file():
            raise ModelNotFoundError(f"model file not found: {path}")
        with path.open("rb") as handle:
            if path.stat().st_size == 0:
                raise ModelFormatError(f"{path} is empty, not a GGUF file")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return cls(memoryview(mapped), path=path, closer=mapped.close,
                       page_dropper=lambda: mapped.madvise(mmap.MADV_DONTNEED))
        except BaseException:
            _try_close(mapped.close)
            raise

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> GGUFFile:
        """Parse a GGUF image the caller already holds in memory (no file is read)."""
        view = memoryview(buf)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        return cls(view)

    @property
    def architecture(self) -> str:
        arch = self.metadata.get("general.architecture")
        if not isinstance(arch, str) or not arch:
            raise ModelFormatError("GGUF metadata has no general.architecture string")
        return arch

    @property
    def n_bytes(self) -> int:
        return len(self._buf)

    def tensor_bytes(self, name: str) -> memoryview:
        """The stored (possibly quantized) bytes of one tensor, without copying."""
        info = self.tensors.get(name)
        if info is None:
            raise KeyError(f"no tensor named {name!r} in the GGUF file")
        if self._closed:
            raise ModelFormatError(f"{self!r} is closed")
        return self._buf[info.offset_bytes : info.offset_bytes + info.n_bytes]

    def drop_resident_pages(self) -> None:
        """Unmap the file pages read so far from this process (they are re-read on use).

        Loading copies each group out of the map; dropping the pages after each group keeps
        the file from counting in the resident memory. A no-op for in-memory images.
        """
        if self._page_dropper is not None and not self._closed:
            self._page_dropper()

    def close(self) -> None:
        """Stop serving tensor bytes; the map is unmapped once no tensor view is in use."""
        self._closed = True
        if self._closer is not None and _try_close(self._buf.release):
            _try_close(self._closer)
            self._closer = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "<bytes>"
        return f"GGUFFile({where}, v{self.version}, {len(self.tensors)} tensors)"


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _try_close(closer: Callable[[], None]) -> bool:
    try:
        closer()
    except BufferError:  # views of the map are still alive; the GC closes it later
        return False
    return True
