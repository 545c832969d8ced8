"""Open a sealed blob in the secure world and decrypt its chunks into caller buffers.

Trust boundary: everything a :class:`BlobReader` returns, and every ``ciphertext`` argument,
is normal-world data. The order of checks in :meth:`SealedModel.open` is fixed:

1. copy the fixed-size header in; check magic, version, flags; cap the manifest size;
2. check the device id, unwrap the data key (AES-GCM, bound to the header's identity fields);
3. verify the header MAC: from here on every header field, including sizes, is trusted;
4. refuse a version below the replay-protected counter;
5. copy the manifest in, authenticate and decrypt it, parse it strictly;
6. compare the blob's size with the size the manifest implies;
7. (install) raise the counter to this version.

Every failure is the same detail-free :class:`SecurityError`. Chunks are copied in, then
authenticated and decrypted in one AEAD step; only verified plaintext reaches ``out``, and
on any failure ``out`` is zeroed.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag

from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layer_groups import LayerGroup, layer_groups
from flexserve.errors import ConfigError, SecurityError
from flexserve.tee.sealing.blob_io import BlobReader, read_exact, reported_size
from flexserve.tee.sealing.buffers import (
    ByteSink,
    ByteSource,
    OutBuffer,
    byte_length,
    byte_view,
    copy_in,
)
from flexserve.tee.sealing.format import (
    HEADER_BYTES,
    META_UNIT,
    Header,
    Manifest,
    parse_header,
    parse_manifest,
)
from flexserve.tee.sealing.geometry import (
    Binding,
    ChunkRef,
    SealedUnit,
    blob_bytes,
    chunk_aad,
    chunk_nonce,
    manifest_nonce,
    plan_units,
)
from flexserve.tee.sealing.keys import DeviceKeys, FileKeys, verify_hmac_sha256
from flexserve.tee.sealing.meta import gguf_from_meta
from flexserve.tee.sealing.rollback import RollbackCounter

UnitRef = int | str | SealedUnit
ChunkSelector = int | ChunkRef
Output = bytearray | memoryview | ByteSink


def _authenticated_header(raw: bytes, device_keys: DeviceKeys) -> tuple[Header, FileKeys]:
    header = parse_header(raw)
    if not hmac.compare_digest(header.device_id, device_keys.device_id):
        raise SecurityError()
    data_key = device_keys.unwrap_data_key(header.model_id, header.wrap_nonce,
                                           header.wrapped_data_key, header.wrap_aad())
    keys = FileKeys.derive(data_key, header.model_id)
    verify_hmac_sha256(keys.header_mac_key, header.mac_input(), header.header_mac)
    return header, keys


def _authenticated_manifest(reader: BlobReader, header: Header, keys: FileKeys) -> Manifest:
    ciphertext = read_exact(reader, HEADER_BYTES, header.manifest_bytes)
    try:
        plain = keys.manifest.decrypt(manifest_nonce(header.nonce_prefix),
                                      ciphertext + header.manifest_tag, header.manifest_aad())
    except InvalidTag:
        raise SecurityError() from None
    return parse_manifest(plain)


class SealedModel:
    """A sealed blob whose header and manifest were verified; decrypts chunks on request."""

    def __init__(self, header: Header, manifest: Manifest, keys: FileKeys,
                 binding: Binding) -> None:
        self.header = header
        self.manifest = manifest
        self.units: tuple[SealedUnit, ...] = plan_units(manifest, header.manifest_bytes)
        self._keys: FileKeys | None = keys
        self._binding = binding
        self._by_name = {unit.name: unit for unit in self.units}

    @classmethod
    def open(cls, reader: BlobReader, device_keys: DeviceKeys, rollback: RollbackCounter,
             *, install: bool = True) -> SealedModel:
        """Verify header and manifest (see the module docstring for the order of checks)."""
        raw = read_exact(reader, 0, HEADER_BYTES)
        header, keys = _authenticated_header(raw, device_keys)
        rollback.check(header.model_id, header.model_version)
        manifest = _authenticated_manifest(reader, header, keys)
        binding = Binding(hashlib.sha256(raw).digest(), header.model_id, header.model_version)
        model = cls(header, manifest, keys, binding)
        if reported_size(reader) != model.blob_bytes:
            raise SecurityError()
        if install:
            rollback.advance(header.model_id, header.model_version)
        return model

    # -- what the blob holds -------------------------------------------------------------

    @property
    def model_id(self) -> bytes:
        return self.header.model_id

    @property
    def model_version(self) -> int:
        return self.header.model_version

    @property
    def chunk_bytes(self) -> int:
        return self.manifest.chunk_bytes

    @property
    def blob_bytes(self) -> int:
        return blob_bytes(self.units)

    @property
    def meta_unit(self) -> SealedUnit:
        return self.units[0]

    @property
    def weight_units(self) -> tuple[SealedUnit, ...]:
        """The layer-group units in load order (``embed``, ``blk.0`` .., ``output``)."""
        return self.units[1:]

    def unit(self, ref: UnitRef) -> SealedUnit:
        """A unit by index, name or (an equal) :class:`SealedUnit`."""
        if isinstance(ref, SealedUnit):
            found = self.units[ref.index] if 0 <= ref.index < len(self.units) else None
            if found != ref:
                raise ConfigError(f"unit {ref.name!r} does not belong to this sealed model")
            return found
        if isinstance(ref, str):
            if ref not in self._by_name:
                raise ConfigError(f"no unit named {ref!r} in this sealed model")
            return self._by_name[ref]
        if not 0 <= ref < len(self.units):
            raise ConfigError(f"no unit #{ref} in this sealed model")
        return self.units[ref]

    @staticmethod
    def _chunk(unit: SealedUnit, chunk: ChunkSelector) -> ChunkRef:
        index = chunk.index_in_unit if isinstance(chunk, ChunkRef) else chunk
        if not 0 <= index < len(unit.chunks) or (
                isinstance(chunk, ChunkRef) and unit.chunks[index] != chunk):
            raise ConfigError(f"no such chunk in unit {unit.name!r}: {chunk!r}")
        return unit.chunks[index]

    # -- decryption ------------------------------------------------------------------------

    def _file_keys(self) -> FileKeys:
        if self._keys is None:
            raise ConfigError("the sealed model is closed")
        return self._keys

    def _decrypt(self, unit: SealedUnit, chunk: ChunkRef, ciphertext: ByteSource,
                 target: OutBuffer, offset_bytes: int) -> None:
        if byte_length(ciphertext) != chunk.ciphertext_bytes:
            raise SecurityError()
        secure = copy_in(ciphertext)  # copy first: the normal world may still write it
        try:
            plain = self._file_keys().chunks.decrypt(
                chunk_nonce(self.header.nonce_prefix, chunk), secure,
                chunk_aad(self._binding, unit, chunk))
        except InvalidTag:
            raise SecurityError() from None
        target.write(offset_bytes, plain)  # only verified plaintext reaches the caller

    @staticmethod
    def _target(out: Output, offset_bytes: int, n_bytes: int) -> OutBuffer:
        target = OutBuffer(out)
        if offset_bytes < 0 or offset_bytes + n_bytes > target.size_bytes:
            target.zero()
            raise ConfigError(f"the output buffer holds {target.size_bytes} bytes, "
                              f"{offset_bytes + n_bytes} needed")
        return target

    def decrypt_chunk_into(self, unit: UnitRef, chunk: ChunkSelector, ciphertext: ByteSource,
                           out: Output, out_offset_bytes: int = 0) -> int:
        """Copy, verify and decrypt one chunk into ``out``; returns the plaintext size.

        ``out`` (a writable byte buffer, or a :class:`ByteSink` such as a FlexBuffer) receives
        the plaintext at ``out_offset_bytes``. On any failure the whole of ``out`` is zeroed
        and :class:`SecurityError` is raised.
        """
        sealed_unit = self.unit(unit)
        ref = self._chunk(sealed_unit, chunk)
        target = self._target(out, out_offset_bytes, ref.plaintext_bytes)
        try:
            self._decrypt(sealed_unit, ref, ciphertext, target, out_offset_bytes)
        except BaseException:
            target.zero()
            raise
        return ref.plaintext_bytes

    def decrypt_unit_into(self, unit: UnitRef, ciphertext: ByteSource, out: Output) -> int:
        """Decrypt a whole unit from its contiguous stored bytes (all chunks, in order)."""
        sealed_unit = self.unit(unit)
        target = self._target(out, 0, sealed_unit.n_bytes)
        try:
            if byte_length(ciphertext) != sealed_unit.ciphertext_bytes:
                raise SecurityError()
            source = byte_view(ciphertext)
            base = sealed_unit.file_offset_bytes
            for ref in sealed_unit.chunks:
                start = ref.file_offset_bytes - base
                self._decrypt(sealed_unit, ref, source[start : start + ref.ciphertext_bytes],
                              target, ref.unit_offset_bytes)
        except BaseException:
            target.zero()
            raise
        return sealed_unit.n_bytes

    def read_unit_into(self, reader: BlobReader, unit: UnitRef, out: Output) -> int:
        """Read a unit's chunks through ``reader`` one at a time and decrypt them into ``out``."""
        sealed_unit = self.unit(unit)
        target = self._target(out, 0, sealed_unit.n_bytes)
        try:
            for ref in sealed_unit.chunks:
                ciphertext = read_exact(reader, ref.file_offset_bytes, ref.ciphertext_bytes)
                self._decrypt(sealed_unit, ref, ciphertext, target, ref.unit_offset_bytes)
        except BaseException:
            target.zero()
            raise
        return sealed_unit.n_bytes

    # -- the GGUF index ----------------------------------------------------------------------

    def read_meta(self, reader: BlobReader) -> bytearray:
        """The decrypted ``meta`` unit: the GGUF header, metadata and tensor index."""
        meta = bytearray(self.meta_unit.n_bytes)
        self.read_unit_into(reader, META_UNIT, meta)
        return meta

    def meta_gguf(self, reader: BlobReader) -> GGUFFile:
        """The GGUF index (metadata and tensor infos, no tensor bytes) from the ``meta`` unit."""
        meta = gguf_from_meta(self.read_meta(reader), self.manifest.gguf_bytes)
        if meta.data_offset_bytes != self.meta_unit.n_bytes:
            raise SecurityError()
        return meta

    def layer_groups(self, meta: GGUFFile) -> list[LayerGroup]:
        """The engine's layer groups for this model, checked against the sealed units."""
        groups = layer_groups(meta)
        expected = [(u.name, u.n_bytes) for u in self.weight_units]
        if [(g.name, g.n_bytes) for g in groups] != expected:
            raise SecurityError()
        return groups

    def close(self) -> None:
        """Forget the file keys; further decryption is refused."""
        self._keys = None

    def __repr__(self) -> str:
        return (f"SealedModel(model_id={self.model_id.hex()[:16]}.., "
                f"version={self.model_version}, units={len(self.units)})")
