"""Build small GGUF images byte by byte, so tests can corrupt any single field."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64 = 4, 5, 6, 7, 8, 9, 10


def gguf_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def kv_bytes(key: str, value_type: int, value: Any) -> bytes:
    return gguf_string(key) + struct.pack("<I", value_type) + value_bytes(value_type, value)


def value_bytes(value_type: int, value: Any) -> bytes:
    if value_type == STRING:
        return gguf_string(value)
    if value_type == UINT32:
        return struct.pack("<I", value)
    if value_type == INT32:
        return struct.pack("<i", value)
    if value_type == FLOAT32:
        return struct.pack("<f", value)
    if value_type == BOOL:
        return struct.pack("<B", value)
    if value_type == UINT64:
        return struct.pack("<Q", value)
    if value_type == ARRAY:
        elem_type, items = value
        body = b"".join(value_bytes(elem_type, item) for item in items)
        return struct.pack("<IQ", elem_type, len(items)) + body
    raise ValueError(value_type)


@dataclass
class TinyGGUF:
    """A GGUF image under construction: metadata pairs and F32 tensors."""

    kvs: list[bytes] = field(default_factory=list)
    tensors: list[tuple[str, np.ndarray, int]] = field(default_factory=list)
    version: int = 3
    magic: bytes = b"GGUF"
    alignment: int = 32

    def kv(self, key: str, value_type: int, value: Any) -> TinyGGUF:
        self.kvs.append(kv_bytes(key, value_type, value))
        return self

    def tensor(self, name: str, array: np.ndarray, ggml_type: int = 0) -> TinyGGUF:
        self.tensors.append((name, np.ascontiguousarray(array), ggml_type))
        return self

    def build(self, offset_shift: int = 0, tensor_count: int | None = None) -> bytes:
        infos, blobs, offset = [], [], 0
        for name, array, ggml_type in self.tensors:
            dims = tuple(reversed(array.shape))
            infos.append(
                gguf_string(name)
                + struct.pack("<I", len(dims))
                + b"".join(struct.pack("<Q", d) for d in dims)
                + struct.pack("<IQ", ggml_type, offset + offset_shift)
            )
            raw = array.tobytes()
            pad = -len(raw) % self.alignment
            blobs.append(raw + b"\0" * pad)
            offset += len(raw) + pad
        n_tensors = len(self.tensors) if tensor_count is None else tensor_count
        head = self.magic + struct.pack("<IQQ", self.version, n_tensors, len(self.kvs))
        head += b"".join(self.kvs) + b"".join(infos)
        head += b"\0" * (-len(head) % self.alignment)
        return head + b"".join(blobs)
