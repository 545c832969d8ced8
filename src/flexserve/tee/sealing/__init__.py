"""Sealed model container: model weights at rest, encrypted and bound to one device.

Public API (secure world only)::

    keys = DeviceKeys.generate()                       # or SecureDevice.load_or_create(dir)
    rollback = RollbackCounter(secure_dir / "rpmb", keys)
    seal_model(gguf_path, out_path, keys, model_version=1)          # streams, chunk by chunk
    model = SealedModel.open(FileBlobReader(out_path), keys, rollback)  # header + manifest
    model.decrypt_chunk_into(unit, chunk, ciphertext, out)          # copy, verify, decrypt
                                           # out: bytearray/memoryview or a FlexBuffer
    model.read_unit_into(reader, "blk.0", out)                      # a whole layer group
    meta = model.meta_gguf(reader)                                  # GGUF index for the engine

The byte layout is documented in ``docs/sealed-format.md``.
"""

from flexserve.tee.sealing.blob_io import (
    BlobReader,
    BytesBlobReader,
    FileBlobReader,
    FlashBlobReader,
)
from flexserve.tee.sealing.buffers import ByteSink
from flexserve.tee.sealing.device import SecureDevice
from flexserve.tee.sealing.format import DEFAULT_CHUNK_BYTES, HEADER_BYTES, HEADER_FIELDS
from flexserve.tee.sealing.geometry import ChunkRef, SealedUnit
from flexserve.tee.sealing.keys import DeviceKeys
from flexserve.tee.sealing.rollback import RollbackCounter
from flexserve.tee.sealing.sealer import SealResult, seal_model
from flexserve.tee.sealing.store import ModelStore, StoredModel, model_id_for
from flexserve.tee.sealing.unsealer import SealedModel

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "HEADER_BYTES",
    "HEADER_FIELDS",
    "BlobReader",
    "ByteSink",
    "BytesBlobReader",
    "ChunkRef",
    "DeviceKeys",
    "FileBlobReader",
    "FlashBlobReader",
    "ModelStore",
    "RollbackCounter",
    "SealResult",
    "SealedModel",
    "SealedUnit",
    "SecureDevice",
    "StoredModel",
    "model_id_for",
    "seal_model",
]
