"""Seal a GGUF model into a device-bound blob, streaming chunk by chunk.

Sealing runs in the secure world (or at a trusted provisioning step) with the device keys.
It never holds more than one chunk of plaintext and never writes plaintext to disk: the
output is written to ``<out>.partial`` (ciphertext only) and renamed when complete.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from flexserve.engine.gguf_file import GGUFFile
from flexserve.errors import ConfigError, ModelFormatError
from flexserve.tee.sealing.format import (
    DATA_KEY_BYTES,
    DEFAULT_CHUNK_BYTES,
    MAX_CHUNK_BYTES,
    MAX_MANIFEST_BYTES,
    MIN_CHUNK_BYTES,
    MODEL_ID_BYTES,
    NONCE_PREFIX_BYTES,
    PAGE_BYTES,
    TAG_BYTES,
    Header,
    Manifest,
    check_chunk_bytes,
)
from flexserve.tee.sealing.geometry import (
    Binding,
    SealedUnit,
    blob_bytes,
    chunk_aad,
    chunk_nonce,
    manifest_nonce,
    plan_units,
)
from flexserve.tee.sealing.keys import DeviceKeys, FileKeys, hmac_sha256
from flexserve.tee.sealing.plaintext import PlainUnit, file_sha256, plain_units, unit_chunks
from flexserve.tee.sealing.rollback import MAX_VERSION

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SealResult:
    """What was sealed, where, and the digest of the blob as written."""

    path: Path
    model_id: bytes
    model_version: int
    blob_bytes: int
    blob_sha256: bytes
    content_sha256: bytes
    plaintext_bytes: int
    n_units: int
    n_chunks: int


@dataclass(frozen=True)
class _Prepared:
    header: bytes
    manifest_ciphertext: bytes
    units: tuple[SealedUnit, ...]
    keys: FileKeys
    binding: Binding
    nonce_prefix: bytes


def _check_args(model_version: int, chunk_bytes: int, model_id: bytes | None) -> None:
    if not check_chunk_bytes(chunk_bytes):
        raise ConfigError(
            f"chunk size must be a multiple of {PAGE_BYTES} bytes in "
            f"{MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES}, got {chunk_bytes}"
        )
    if isinstance(model_version, bool) or not 0 <= model_version <= MAX_VERSION:
        raise ConfigError(f"model version must be an integer in 0..{MAX_VERSION}")
    if model_id is not None and len(model_id) != MODEL_ID_BYTES:
        raise ConfigError(f"a model id is {MODEL_ID_BYTES} bytes")


def _sealed_header(manifest_plain: bytes, device_keys: DeviceKeys, model_id: bytes,
                   model_version: int, data_key: bytes, keys: FileKeys) -> tuple[Header, bytes]:
    """(header, manifest ciphertext): wrap the data key, encrypt the manifest, then MAC."""
    header = Header(model_id, model_version, device_keys.device_id,
                    os.urandom(NONCE_PREFIX_BYTES), manifest_bytes=len(manifest_plain))
    wrap_nonce, wrapped = device_keys.wrap_data_key(model_id, data_key, header.wrap_aad())
    header = replace(header, wrap_nonce=wrap_nonce, wrapped_data_key=wrapped)
    sealed = keys.manifest.encrypt(manifest_nonce(header.nonce_prefix), manifest_plain,
                                   header.manifest_aad())
    header = replace(header, manifest_tag=sealed[-TAG_BYTES:])
    header = replace(header, header_mac=hmac_sha256(keys.header_mac_key, header.mac_input()))
    return header, sealed[:-TAG_BYTES]


def _prepare(manifest: Manifest, device_keys: DeviceKeys, model_id: bytes,
             model_version: int) -> _Prepared:
    manifest_plain = manifest.pack()
    if len(manifest_plain) > MAX_MANIFEST_BYTES:
        raise ModelFormatError("the model has too many layers to seal")
    data_key = os.urandom(DATA_KEY_BYTES)
    keys = FileKeys.derive(data_key, model_id)
    header, manifest_ct = _sealed_header(manifest_plain, device_keys, model_id, model_version,
                                         data_key, keys)
    raw = header.pack()
    binding = Binding(hashlib.sha256(raw).digest(), model_id, model_version)
    units = plan_units(manifest, len(manifest_plain))
    return _Prepared(raw, manifest_ct, units, keys, binding, header.nonce_prefix)


class _HashingWriter:
    """Appends ciphertext to the output file and hashes what was written."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)


def _write_units(writer: _HashingWriter, gguf: GGUFFile, gguf_path: Path,
                 plain: list[PlainUnit], prepared: _Prepared, chunk_bytes: int,
                 progress: ProgressCallback | None) -> None:
    total, done = sum(u.n_bytes for u in plain), 0
    for source, unit in zip(plain, prepared.units, strict=True):
        pieces = unit_chunks(gguf, gguf_path, source, chunk_bytes)
        for chunk, piece in zip(unit.chunks, pieces, strict=True):
            writer.write(prepared.keys.chunks.encrypt(
                chunk_nonce(prepared.nonce_prefix, chunk), piece,
                chunk_aad(prepared.binding, unit, chunk)))
            done += chunk.plaintext_bytes
            if progress is not None:
                progress(done, total)


def seal_model(
    gguf_path: str | Path,
    out_path: str | Path,
    device_keys: DeviceKeys,
    model_version: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    *,
    model_id: bytes | None = None,
    progress: ProgressCallback | None = None,
) -> SealResult:
    """Seal ``gguf_path`` into ``out_path`` for this device.

    ``model_id`` names the model lineage for anti-rollback and key derivation; by default it
    is the SHA-256 of the plaintext file. ``progress(done_bytes, total_bytes)`` is called
    after every chunk.
    """
    _check_args(model_version, chunk_bytes, model_id)
    gguf_path, out_path = Path(gguf_path), Path(out_path)
    with GGUFFile.open(gguf_path) as gguf:
        if out_path.resolve() == gguf_path.resolve():
            raise ConfigError("the sealed output would overwrite the plaintext model")
        content = file_sha256(gguf_path)
        plain = plain_units(gguf)
        manifest = Manifest(chunk_bytes, gguf.n_bytes, content, tuple(u.entry() for u in plain))
        prepared = _prepare(manifest, device_keys, model_id or content, model_version)
        digest = _write_blob(out_path, gguf, gguf_path, plain, prepared, chunk_bytes, progress)
    return SealResult(
        out_path, model_id or content, model_version, blob_bytes(prepared.units), digest,
        content, sum(u.n_bytes for u in plain), len(plain),
        sum(len(u.chunks) for u in prepared.units),
    )


def _write_blob(out_path: Path, gguf: GGUFFile, gguf_path: Path, plain: list[PlainUnit],
                prepared: _Prepared, chunk_bytes: int,
                progress: ProgressCallback | None) -> bytes:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        with partial.open("wb") as handle:
            writer = _HashingWriter(handle)
            writer.write(prepared.header)
            writer.write(prepared.manifest_ciphertext)
            _write_units(writer, gguf, gguf_path, plain, prepared, chunk_bytes, progress)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, out_path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return writer.digest.digest()
