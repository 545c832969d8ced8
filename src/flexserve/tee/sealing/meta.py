"""The decrypted ``meta`` unit as a GGUF index the engine can use (no plaintext file needed).

``meta`` holds the GGUF file's first ``data_offset`` bytes: header, metadata (hyper-parameters,
tokenizer, chat template) and the tensor index. :class:`GGUFFile` checks every tensor's extent
against the length of its buffer, so the index is parsed from a sparse image of the original
file: an anonymous mapping of ``gguf_bytes`` (its untouched pages are never backed by memory)
with the meta copied at offset 0. The returned file is closed at once, so ``tensor_bytes``
refuses to serve the image's zero pages; metadata, tensor infos and ``layer_groups`` work.
"""

from __future__ import annotations

import contextlib
import mmap

from flexserve.engine.gguf_file import GGUFFile
from flexserve.errors import SecurityError
from flexserve.tee.sealing.format import MAX_GGUF_BYTES


def gguf_from_meta(meta: bytes | bytearray, gguf_bytes: int) -> GGUFFile:
    """Parse ``meta`` (authenticated plaintext) as the index of a ``gguf_bytes``-byte GGUF."""
    if not 0 < len(meta) <= gguf_bytes <= MAX_GGUF_BYTES:
        raise SecurityError()
    image = mmap.mmap(-1, gguf_bytes)
    image[: len(meta)] = meta
    try:
        gguf = GGUFFile(memoryview(image), closer=image.close)
    except BaseException:
        with contextlib.suppress(BufferError):
            image.close()
        raise
    gguf.close()
    return gguf
