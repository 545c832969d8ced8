"""``import``: a user's GGUF sealed into the device store, checked, then installed.

Steps (any failure leaves nothing in the store and the rollback counter untouched):

1. validate the file (:func:`check_importable`) and the name (not bundled or shape-only,
   not taken unless ``update``);
2. seal the next version beside the store's blobs (staged, invisible to ``versions``); the
   sealer measures the source's SHA-256 as it seals, and that digest must equal
   ``expected_sha256`` when one was given;
3. open the staged blob with the device keys and stream through everything it decrypts to:
   the rebuilt file must have the source's digest (:func:`verify_blob`);
4. install: rename the blob into place, raise the counter, write the sidecar of public facts.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from flexserve.catalog import reserved_name
from flexserve.catalog.gguf_check import check_importable
from flexserve.catalog.imported import ImportedModel, find_imported, write_sidecar
from flexserve.errors import ConfigError, ModelError, SecurityError
from flexserve.tee.sealing.format import DEFAULT_CHUNK_BYTES
from flexserve.tee.sealing.sealer import ProgressCallback, SealResult
from flexserve.tee.sealing.store import ModelStore, StoredModel, store_name, valid_store_name
from flexserve.tee.sealing.verify import verify_blob

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class ImportResult:
    model: ImportedModel
    stored: StoredModel


def parse_sha256(text: str) -> bytes:
    if not _SHA256_RE.match(text.strip()):
        raise ConfigError(f"--sha256 must be 64 hex digits, got {text!r}")
    return bytes.fromhex(text.strip())


def default_import_name(path: Path) -> str:
    return store_name(Path(path).stem)


def check_import_name(store: ModelStore, name: str, update: bool) -> None:
    if not valid_store_name(name) or name.endswith(".gguf"):
        raise ConfigError(f"invalid model name {name!r}: up to 64 letters, digits, '.', '_' "
                          f"or '-', starting with a letter or digit, not ending in .gguf")
    if reserved_name(name):
        raise ConfigError(f"{name!r} is a bundled or shape-only model name; choose another "
                          f"--name")
    taken = find_imported(store.root, name) is not None or store.versions(name)
    if taken and not update:
        raise ConfigError(f"a model named {name!r} is already in the store; --update seals "
                          f"a new version, `flexserve rm {name}` removes it")


def _file_state(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _check_staged(staged: SealResult, path: Path, expected_sha256: bytes | None,
                  before: tuple[int, int]) -> None:
    if expected_sha256 is not None and not hmac.compare_digest(staged.content_sha256,
                                                               expected_sha256):
        raise ModelError(f"sha256 mismatch: {path.name} is {staged.content_sha256.hex()}, "
                         f"--sha256 says {expected_sha256.hex()}; nothing was imported")
    if _file_state(path) != before:
        raise ModelError(f"{path.name} changed while it was being imported; nothing was "
                         f"imported")


def _verify(store: ModelStore, staged: SealResult, path: Path,
            progress: ProgressCallback | None) -> None:
    try:
        verify_blob(staged.path, store.device, staged.content_sha256, progress)
    except SecurityError:
        raise ModelError(f"the sealed copy of {path.name} does not decrypt back to its "
                         f"sha256 {staged.content_sha256.hex()}; nothing was imported") from None


def import_model(store: ModelStore, path: Path, name: str | None = None, *,
                 expected_sha256: bytes | None = None, update: bool = False,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 seal_progress: ProgressCallback | None = None,
                 verify_progress: ProgressCallback | None = None) -> ImportResult:
    """Seal ``path`` into ``store`` as ``name`` (default: the file's stem); see module doc."""
    path = Path(path).expanduser()
    facts = check_importable(path)
    name = name if name is not None else default_import_name(path)
    check_import_name(store, name, update)
    before = _file_state(path)
    staged = store.stage(path, name, chunk_bytes=chunk_bytes, progress=seal_progress)
    try:
        _check_staged(staged, path, expected_sha256, before)
        _verify(store, staged, path, verify_progress)
        model = ImportedModel.from_facts(
            name, facts, source_file=path.name, source_sha256=staged.content_sha256.hex(),
            imported_at=datetime.now(UTC).isoformat(timespec="seconds"),
            version=staged.model_version, blob_sha256=staged.blob_sha256.hex())
        stored = store.commit(staged, name)
    except BaseException:
        store.discard(staged)
        raise
    write_sidecar(store.sidecar_path(name), model)
    return ImportResult(model, stored)
