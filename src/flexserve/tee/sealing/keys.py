"""The key hierarchy of sealed models.

::

    HUK (32 B, per device, emulated OTP fuse; never leaves this object)
     |- device id  = HKDF-SHA256(HUK, info="flexserve/device-id/v1")[:16]   (public)
     |- KEK(model) = HKDF-SHA256(HUK, salt="flexserve/kek/v1", info=model_id)
     |     '- wraps the data key with AES-256-GCM (AAD: header magic .. nonce prefix)
     '- RPMB key   = HKDF-SHA256(HUK, info="flexserve/rpmb/v1")   (anti-rollback records)
    data key (32 B, random per sealed file)
     |- header MAC key = HKDF-SHA256(data key, salt=model_id, info=".../header-mac")
     |- manifest key   = HKDF-SHA256(data key, salt=model_id, info=".../manifest")
     '- chunk key      = HKDF-SHA256(data key, salt=model_id, info=".../chunks")

Only :class:`DeviceKeys` ever touches the HUK, and it offers no method that returns it or a
key derived from it: callers get wrapping, unwrapping and MACs as operations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flexserve.errors import ConfigError, SecurityError
from flexserve.tee.sealing.format import (
    DATA_KEY_BYTES,
    DEVICE_ID_BYTES,
    WRAP_NONCE_BYTES,
    WRAPPED_KEY_BYTES,
)

HUK_BYTES = 32
_LABEL = b"flexserve/sealed/v1/"


def hkdf(ikm: bytes, info: bytes, length_bytes: int = 32, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length_bytes, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()


def verify_hmac_sha256(key: bytes, data: bytes, tag: bytes) -> None:
    """Constant-time check; a mismatch is a SecurityError."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    try:
        mac.verify(tag)
    except InvalidSignature:
        raise SecurityError() from None


class DeviceKeys:
    """The emulated device's hardware unique key, usable only through operations."""

    __slots__ = ("_huk", "device_id")

    def __init__(self, huk: bytes) -> None:
        if not isinstance(huk, bytes) or len(huk) != HUK_BYTES:
            raise ConfigError(f"a hardware unique key is {HUK_BYTES} bytes")
        self._huk = huk
        self.device_id = hkdf(huk, b"flexserve/device-id/v1", DEVICE_ID_BYTES)

    @classmethod
    def generate(cls) -> DeviceKeys:
        """A fresh device (a new random HUK)."""
        return cls(os.urandom(HUK_BYTES))

    @classmethod
    def load_or_create(cls, fuse_path: Path) -> DeviceKeys:
        """The device whose HUK is burnt into ``fuse_path`` (secure storage), burning one once."""
        fuse_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(fuse_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(fuse_path.read_bytes())
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(HUK_BYTES))
        return cls(fuse_path.read_bytes())

    def _kek(self, model_id: bytes) -> AESGCM:
        return AESGCM(hkdf(self._huk, model_id, salt=b"flexserve/kek/v1"))

    def wrap_data_key(self, model_id: bytes, data_key: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """``(wrap_nonce, wrapped)``: the data key under this device's KEK for ``model_id``."""
        nonce = os.urandom(WRAP_NONCE_BYTES)
        return nonce, self._kek(model_id).encrypt(nonce, data_key, aad)

    def unwrap_data_key(self, model_id: bytes, nonce: bytes, wrapped: bytes, aad: bytes) -> bytes:
        if len(wrapped) != WRAPPED_KEY_BYTES:
            raise SecurityError()
        try:
            return self._kek(model_id).decrypt(nonce, wrapped, aad)
        except InvalidTag:
            raise SecurityError() from None

    def rpmb_mac(self, data: bytes) -> bytes:
        """MAC of a replay-protected record (the RPMB authentication key never leaves)."""
        return hmac_sha256(hkdf(self._huk, b"flexserve/rpmb/v1"), data)

    def verify_rpmb_mac(self, data: bytes, tag: bytes) -> None:
        verify_hmac_sha256(hkdf(self._huk, b"flexserve/rpmb/v1"), data, tag)

    def __repr__(self) -> str:
        return f"DeviceKeys(device_id={self.device_id.hex()})"

    def __reduce__(self) -> object:
        raise TypeError("device keys cannot be pickled")


@dataclass(frozen=True, repr=False)
class FileKeys:
    """Per-file keys derived from one sealed file's data key."""

    header_mac_key: bytes
    manifest: AESGCM
    chunks: AESGCM

    @classmethod
    def derive(cls, data_key: bytes, model_id: bytes) -> FileKeys:
        if len(data_key) != DATA_KEY_BYTES:
            raise SecurityError()
        return cls(
            hkdf(data_key, _LABEL + b"header-mac", salt=model_id),
            AESGCM(hkdf(data_key, _LABEL + b"manifest", salt=model_id)),
            AESGCM(hkdf(data_key, _LABEL + b"chunks", salt=model_id)),
        )

    def __repr__(self) -> str:
        return "FileKeys(<secret>)"
