"""The model store: a folder of sealed blobs on the (normal-world) flash.

Layout: ``<store>/<name>.v<version>.fxsealed``, and for an imported model a sidecar of
public facts, ``<store>/<name>.model.json`` (docs/models.md). The store folder is ordinary
untrusted storage; everything that must resist the attacker (the HUK, the anti-rollback counters)
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
SIDECAR_SUFFIX = ".model.json"
STAGING_SUFFIX = ".staged"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_BLOB_RE = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)" + re.escape(BLOB_SUFFIX) + "$")
_STAGED_RE = re.compile(_BLOB_RE.pattern.removesuffix("$") + re.escape(STAGING_SUFFIX) + "$")


def flexserve_home() -> Path:
    home = os.environ.get(HOME_ENV)
    return Path(home).expanduser() if home else Path.home() / ".local" / "share" / "flexserve"


def default_store_root() -> Path:
    return flexserve_home() / "store"


def model_id_for(name: str) -> bytes:
    """The stable model id of a named model: all its versions share one rollback counter."""
    return hashlib.sha256(b"flexserve/model-id/v1\0" + name.encode("utf-8")).digest()


def valid_store_name(text: str) -> bool:
    return bool(_NAME_RE.match(text))


def store_name(text: str) -> str:
    """A store name from a catalog name or file stem (unsafe characters become ``-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", text).lstrip("._-")[:64]
    if not _NAME_RE.match(name):
        raise ConfigError(f"cannot derive a store name from {text!r}")
    return name


def sidecar_path(store_root: Path, name: str) -> Path:
    """Where an imported model's public facts live (see :mod:`flexserve.catalog.imported`)."""
    if not _NAME_RE.match(name):
        raise ConfigError(f"invalid model name for the store: {name!r}")
    return Path(store_root) / f"{name}{SIDECAR_SUFFIX}"


@dataclass(frozen=True)
class StoredModel:
    name: str
    version: int
    path: Path

    @property
    def blob_bytes(self) -> int:
        return self.path.stat().st_size


def stored_blobs(store_root: Path, name: str) -> list[StoredModel]:
    """The sealed versions of ``name`` under ``store_root``, oldest first (no keys needed)."""
    root = Path(store_root)
    if not root.is_dir():
        return []
    found = (_BLOB_RE.match(p.name) for p in root.glob(f"*{BLOB_SUFFIX}"))
    versions = sorted(int(m["version"]) for m in found if m and m["name"] == name)
    return [StoredModel(name, v, root / f"{name}.v{v}{BLOB_SUFFIX}") for v in versions]


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
        return cls(default_store_root(),
                   SecureDevice.load_or_create(flexserve_home() / "secure"))

    def blob_path(self, name: str, version: int) -> Path:
        if not _NAME_RE.match(name):
            raise ConfigError(f"invalid model name for the store: {name!r}")
        return self.root / f"{name}.v{version}{BLOB_SUFFIX}"

    def versions(self, name: str) -> list[int]:
        return [stored.version for stored in stored_blobs(self.root, name)]

    def latest(self, name: str) -> StoredModel | None:
        versions = self.versions(name)
        if not versions:
            return None
        return StoredModel(name, versions[-1], self.blob_path(name, versions[-1]))

    def stored(self, name: str) -> list[StoredModel]:
        """Every sealed version of ``name`` in the store, oldest first."""
        return stored_blobs(self.root, name)

    def sidecar_path(self, name: str) -> Path:
        return sidecar_path(self.root, name)

    def minimum_version(self, name: str) -> int:
        return self.device.rollback.minimum_version(model_id_for(name))

    def next_version(self, name: str) -> int:
        """Above both the rollback counter and every blob in the store."""
        return max([self.minimum_version(name), *self.versions(name)]) + 1

    def seal(self, gguf_path: Path, name: str, version: int | None = None, *,
             chunk_bytes: int = DEFAULT_CHUNK_BYTES, out_path: Path | None = None,
             progress: ProgressCallback | None = None) -> SealResult:
        """Seal a GGUF file as ``name`` (next version by default) and raise the counter."""
        version = self.next_version(name) if version is None else version
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

    def stage(self, gguf_path: Path, name: str, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
              progress: ProgressCallback | None = None) -> SealResult:
        """Seal the next version of ``name`` beside the store's blobs, not yet installed.

        The staged blob (``<name>.v<N>.fxsealed.staged``) is invisible to :meth:`versions`
        and the rollback counter is untouched until :meth:`commit`; :meth:`discard` drops it.
        """
        version = self.next_version(name)
        target = self.blob_path(name, version).with_name(
            f"{name}.v{version}{BLOB_SUFFIX}{STAGING_SUFFIX}")
        target.unlink(missing_ok=True)  # a leftover of an interrupted import
        return seal_model(gguf_path, target, self.device.keys, version, chunk_bytes,
                          model_id=model_id_for(name), progress=progress)

    def commit(self, staged: SealResult, name: str) -> StoredModel:
        """Install a staged blob: rename it into place, then raise the counter to its version."""
        final = self.blob_path(name, staged.model_version)
        if staged.path.name != final.name + STAGING_SUFFIX or staged.path.parent != self.root:
            raise ConfigError(f"{staged.path} is not a staged blob of {name!r}")
        if final.exists():
            raise ConfigError(f"{final} already exists")
        os.replace(staged.path, final)
        self.device.rollback.advance(staged.model_id, staged.model_version)
        return StoredModel(name, staged.model_version, final)

    @staticmethod
    def discard(staged: SealResult) -> None:
        staged.path.unlink(missing_ok=True)

    def remove(self, name: str) -> list[Path]:
        """Delete every sealed version, staged leftover and the sidecar of ``name``.

        The rollback counter is deliberately left where it is: lowering it would let an old,
        removed version (say one with a known flaw) be installed again. The next seal of
        ``name`` therefore gets a version above every one ever installed.
        """
        doomed = [stored.path for stored in self.stored(name)]
        staged = (_STAGED_RE.match(p.name) for p in self.root.glob(f"*{STAGING_SUFFIX}"))
        doomed += [self.root / m[0] for m in staged if m and m["name"] == name]
        doomed += [p for p in (self.sidecar_path(name),) if p.exists()]
        for path in doomed:
            path.unlink(missing_ok=True)
        return doomed

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
