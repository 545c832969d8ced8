"""The secure world's persistent sealing state: device keys and replay-protected counters.

``secure_dir`` stands for the device's secure storage (OTP fuses and the RPMB partition). It
must never be the normal world's flash directory or inside it: the attacker may rewrite any
flash file, but not these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flexserve.tee.sealing.keys import DeviceKeys
from flexserve.tee.sealing.rollback import RollbackCounter

HUK_FUSE = Path("otp") / "huk"
RPMB_DIR = Path("rpmb")


@dataclass(frozen=True)
class SecureDevice:
    """A device's HUK and its anti-rollback counters, rooted at ``root``."""

    root: Path
    keys: DeviceKeys
    rollback: RollbackCounter

    @classmethod
    def load_or_create(cls, secure_dir: Path) -> SecureDevice:
        """The device whose secure storage is ``secure_dir`` (provisioned on first use)."""
        root = Path(secure_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = DeviceKeys.load_or_create(root / HUK_FUSE)
        return cls(root, keys, RollbackCounter(root / RPMB_DIR, keys))
