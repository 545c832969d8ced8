"""Check that a sealed blob decrypts back to the exact source file (the last step of an import).

A blob holds the GGUF prefix (the ``meta`` unit) and the tensors regrouped per layer, so the
file is rebuilt in file order from what the blob decrypts to: ``meta``, then every tensor at its
file offset, the alignment gaps and the tail zero-filled (GGUF writers pad with zeros; a file
whose padding is not zero cannot be reproduced, so it does not verify). The SHA-256 of that
stream must equal both the digest in the authenticated manifest and the digest of the source
the caller measured. At most one decrypted chunk is held at a time; the blob is opened with
the device keys but not installed (the rollback counter is not touched).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from flexserve.engine.gguf_file import GGUFFile
from flexserve.errors import SecurityError
from flexserve.tee.sealing.blob_io import BlobReader, FileBlobReader, read_exact
from flexserve.tee.sealing.device import SecureDevice
from flexserve.tee.sealing.meta import gguf_from_meta
from flexserve.tee.sealing.sealer import ProgressCallback
from flexserve.tee.sealing.unsealer import SealedModel

_ZEROS = bytes(1 << 16)


class _ChunkWindow:
    """Decrypted plaintext of a unit's byte range, one chunk in memory at a time."""

    def __init__(self, model: SealedModel, reader: BlobReader) -> None:
        self.model, self.reader = model, reader
        self._key: tuple[str, int] | None = None
        self._plain = bytearray()

    def _chunk(self, unit_name: str, index: int) -> bytearray:
        if self._key != (unit_name, index):
            unit = self.model.unit(unit_name)
            ref = unit.chunks[index]
            ciphertext = read_exact(self.reader, ref.file_offset_bytes, ref.ciphertext_bytes)
            self._plain = bytearray(ref.plaintext_bytes)
            self.model.decrypt_chunk_into(unit, index, ciphertext, self._plain)
            self._key = (unit_name, index)
        return self._plain

    def feed(self, digest: hashlib._Hash, unit_name: str, start_bytes: int,
             n_bytes: int) -> None:
        """Hash the unit's plaintext bytes ``start_bytes .. start_bytes + n_bytes``."""
        chunk_bytes = self.model.chunk_bytes
        end = start_bytes + n_bytes
        for index in range(start_bytes // chunk_bytes, -(-end // chunk_bytes)):
            base = index * chunk_bytes
            plain = self._chunk(unit_name, index)
            lo, hi = max(start_bytes, base) - base, min(end, base + len(plain)) - base
            if hi < lo:
                raise SecurityError()
            digest.update(memoryview(plain)[lo:hi])


def _feed_zeros(digest: hashlib._Hash, n_bytes: int) -> None:
    if n_bytes < 0:
        raise SecurityError()
    while n_bytes > 0:
        step = min(n_bytes, len(_ZEROS))
        digest.update(_ZEROS[:step])
        n_bytes -= step


def _index(model: SealedModel, reader: BlobReader) -> tuple[bytearray, GGUFFile]:
    meta = model.read_meta(reader)
    index = gguf_from_meta(meta, model.manifest.gguf_bytes)
    if index.data_offset_bytes != len(meta):
        raise SecurityError()
    return meta, index


def rebuilt_sha256(model: SealedModel, reader: BlobReader,
                   progress: ProgressCallback | None = None) -> bytes:
    """The SHA-256 of the GGUF file rebuilt, in file order, from the decrypted blob."""
    meta, index = _index(model, reader)
    placed = {info.name: (group.name, rel) for group in model.layer_groups(index)
              for info, rel in zip(group.tensors, group.rel_offsets, strict=True)}
    digest, window = hashlib.sha256(meta), _ChunkWindow(model, reader)
    total, position = model.manifest.gguf_bytes, len(meta)
    for info in sorted(index.tensors.values(), key=lambda t: t.offset_bytes):
        _feed_zeros(digest, info.offset_bytes - position)
        if info.n_bytes:
            window.feed(digest, *placed[info.name], info.n_bytes)
        position = info.offset_bytes + info.n_bytes
        if progress is not None:
            progress(position, total)
    _feed_zeros(digest, total - position)
    if progress is not None:
        progress(total, total)
    return digest.digest()


def verify_blob(path: Path, device: SecureDevice, source_sha256: bytes,
                progress: ProgressCallback | None = None) -> None:
    """SecurityError unless the blob at ``path`` opens on ``device`` and rebuilds the source."""
    with FileBlobReader(path) as reader:
        model = SealedModel.open(reader, device.keys, device.rollback, install=False)
        try:
            rebuilt = rebuilt_sha256(model, reader, progress)
        finally:
            model.close()
    claimed = model.manifest.content_sha256
    if not (hmac.compare_digest(rebuilt, source_sha256)
            and hmac.compare_digest(claimed, source_sha256)):
        raise SecurityError()
