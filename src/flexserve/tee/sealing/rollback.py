"""Anti-rollback: an emulated replay-protected counter (RPMB-like), one per model id.

Each model id has a record holding the minimum model version the device still accepts. The
records live in the secure world's storage directory, which stands for the eMMC RPMB
partition: the normal-world attacker API (flash files, the TEE file service) cannot reach it.
As in RPMB, every record carries a write counter and a MAC under a key derived from the HUK,
so a record that was corrupted, forged or copied from another device is refused (fail closed:
it never reads as "no minimum").

Record file ``<model_id hex>.rpmb`` (56 bytes, little-endian)::

    0   8  magic "FXRPMB01"
    8   8  u64 minimum version
    16  8  u64 write counter (number of times this record was raised)
    24 32  HMAC-SHA256(RPMB key, magic || model id || minimum version || write counter)
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from flexserve.errors import ConfigError, SecurityError
from flexserve.tee.sealing.format import MODEL_ID_BYTES
from flexserve.tee.sealing.keys import DeviceKeys

RECORD_MAGIC = b"FXRPMB01"
_RECORD = struct.Struct("<8sQQ32s")
MAX_VERSION = (1 << 64) - 1


class RollbackCounter:
    """Per-model-id monotonic minimum versions, in secure storage under ``root``."""

    def __init__(self, root: Path, keys: DeviceKeys) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._keys = keys

    def _path(self, model_id: bytes) -> Path:
        if len(model_id) != MODEL_ID_BYTES:
            raise ConfigError(f"a model id is {MODEL_ID_BYTES} bytes")
        return self.root / f"{model_id.hex()}.rpmb"

    def _mac_input(self, model_id: bytes, version: int, writes: int) -> bytes:
        return RECORD_MAGIC + model_id + struct.pack("<QQ", version, writes)

    def _read(self, model_id: bytes) -> tuple[int, int]:
        path = self._path(model_id)
        if not path.exists():
            return 0, 0
        raw = path.read_bytes()
        if len(raw) != _RECORD.size:
            raise SecurityError()
        magic, version, writes, tag = _RECORD.unpack(raw)
        if magic != RECORD_MAGIC:
            raise SecurityError()
        self._keys.verify_rpmb_mac(self._mac_input(model_id, version, writes), tag)
        return version, writes

    def minimum_version(self, model_id: bytes) -> int:
        """The lowest version still accepted for ``model_id`` (0 if never installed)."""
        return self._read(model_id)[0]

    def check(self, model_id: bytes, model_version: int) -> None:
        """SecurityError if ``model_version`` is older than an installed version."""
        if model_version < self.minimum_version(model_id):
            raise SecurityError()

    def advance(self, model_id: bytes, model_version: int) -> None:
        """Raise the minimum to ``model_version``; never lowers it."""
        if not 0 <= model_version <= MAX_VERSION:
            raise ConfigError(f"model version must be in 0..{MAX_VERSION}")
        current, writes = self._read(model_id)
        if model_version <= current:
            return
        writes += 1
        tag = self._keys.rpmb_mac(self._mac_input(model_id, model_version, writes))
        self._write_atomic(self._path(model_id),
                           _RECORD.pack(RECORD_MAGIC, model_version, writes, tag))

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
