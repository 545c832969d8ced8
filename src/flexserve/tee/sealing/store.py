"""The model store: a folder of sealed blobs on the (normal-world) flash.

Layout: ``<store>/<name>.v<version>.fxsealed``. The store folder is ordinary untrusted
storage; everything that must resist the attacker (the HUK, the anti-rollback counters)
lives in the :class:`SecureDevice` directory, which may not overlap it.

Defaults: ``$FLEXSERVE_HOME/store`` and ``$FLEXSERVE_HOME/secure``, with
``FLEXSERVE_HOME`` defaulting to ``~/.local/share/flexserve``. A bundled model is sealed
into the store the first time it is asked for (:meth:`ModelStore.ensure_sealed`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from flexserve.errors import ConfigError, ModelError
from flexserve.tee.sealing.blob_io import FileBlobReader
from flexserve.tee.sealing.device import SecureDevice
from flexserve.tee.sealing.format import DEFAULT_CHUNK_BYTES
from flexserve.tee.sealing.sealer import ProgressCallback, SealResult, seal_model
from flexserve.tee.sealing.unsealer import SealedModel

HOME_ENV = "FLEXSERVE_HOME"
BLOB_SUFFIX = ".fxsealed"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_BLOB_RE = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)" + re.escape(BLOB_SUFFIX) + "$")


def flexserve_home() -> Path:
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() if home else Path.home() / ".local" / "share" / "flexserve"


def model_id_for(name: str) -> bytes:
    """The stable model id of a named model: all its versions share one rollback counter."""
    return hashlib.sha256(b"flexserve/model-id/v1\0" + name.encode("utf-8")).digest()


def store_name(text: str) -> str:
    """A store name from a catalog name or file stem (unsafe characters become ``-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", text).lstrip("._-")[:64]
    if not _NAME_RE.match(name):
        raise ConfigError(f"cannot derive a store name from {text!r}")
    return name


@dataclass(frozen=True)
class StoredModel:
    name: str
    version: int
    path: Path

    @property
    def blob_bytes(self) -> int:
        return self.path.stat().st_size


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


class ModelStore:
    """Sealed blobs under ``root``, sealed for and opened with ``device``."""

    def __init__(self, root: Path, device: SecureDevice) -> None:
        self.root = Path(root).expanduser().resolve()
        if _overlaps(self.root, device.root):
            raise ConfigError("the model store and the secure storage must not overlap")
        self.root.mkdir(parents=True, exist_ok=True)
        self.device = device

    @classmethod
    def default(cls) -> ModelStore:
        home = flexserve_home()
        return cls(home / "store", SecureDevice.load_or_create(home / "secure"))

    def blob_path(self, name: str, version: int) -> Path:
        if not _NAME_RE.match(name):
            raise ConfigError(f"invalid model name for the store: {name!r}")
        return self.root / f"{name}.v{version}{BLOB_SUFFIX}"

    def versions(self, name: str) -> list[int]:
        found = (_BLOB_RE.match(p.name) for p in self.root.glob(f"*{BLOB_SUFFIX}"))
        return sorted(int(m["version"]) for m in found if m and m["name"] == name)

    def latest(self, name: str) -> StoredModel | None:
        versions = self.versions(name)
        if not versions:
            return None
        return StoredModel(name, versions[-1], self.blob_path(name, versions[-1]))

    def minimum_version(self, name: str) -> int:
        return self.device.rollback.minimum_version(model_id_for(name))

    def _next_version(self, name: str) -> int:
        return max([self.minimum_version(name), *self.versions(name)]) + 1

    def seal(self, gguf_path: Path, name: str, version: int | None = None, *,
             chunk_bytes: int = DEFAULT_CHUNK_BYTES, out_path: Path | None = None,
             progress: ProgressCallback | None = None) -> SealResult:
        """Seal a GGUF file as ``name`` (next version by default) and raise the counter."""
        version = self._next_version(name) if version is None else version
        minimum = self.minimum_version(name)
        if version < minimum:
            raise ConfigError(f"version {version} of {name!r} is older than the installed "
                              f"version {minimum}; the device would refuse it")
        target = Path(out_path) if out_path is not None else self.blob_path(name, version)
        if target.exists():
            raise ConfigError(f"{target} already exists; choose another --version or --out")
        result = seal_model(gguf_path, target, self.device.keys, version, chunk_bytes,
                            model_id=model_id_for(name), progress=progress)
        self.device.rollback.advance(result.model_id, version)
        return result

    def ensure_sealed(self, name: str, gguf_path: Path,
                      progress: ProgressCallback | None = None) -> StoredModel:
        """The newest sealed blob of ``name``, sealing ``gguf_path`` first if there is none."""
        found = self.latest(name)
        if found is not None and found.version >= self.minimum_version(name):
            return found
        version = max(1, self.minimum_version(name))
        result = self.seal(gguf_path, name, version, progress=progress)
        return StoredModel(name, version, result.path)

    def ensure_catalog(self, name_or_path: str,
                       progress: ProgressCallback | None = None) -> StoredModel:
        """A catalog model (or a .gguf path) in the store, sealed on first use."""
        from flexserve.catalog import resolve

        entry = resolve(name_or_path)
        if entry.path is None:
            raise ModelError(f"{entry.name} is a shape-only model: it has no weights to seal")
        return self.ensure_sealed(store_name(entry.name), entry.path, progress)

    def open(self, name: str, version: int | None = None) -> tuple[SealedModel, FileBlobReader]:
        """Verify and install the newest (or the given) version; returns it and its reader."""
        stored = self.latest(name) if version is None else StoredModel(
            name, version, self.blob_path(name, version))
        if stored is None:
            raise ModelError(f"no sealed model named {name!r} in {self.root}")
        reader = FileBlobReader(stored.path)
        try:
            model = SealedModel.open(reader, self.device.keys, self.device.rollback)
        except BaseException:
            reader.close()
            raise
        return model, reader
