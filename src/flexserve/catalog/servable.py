"""Which models a device session can serve, and their sealed blobs in the store.

A servable model is one with weights: a bundled model (sealed into the store on first use), a
model imported into the store (``flexserve import``: only its sealed blobs exist) or a
``.gguf`` path. ``stored_model`` is the one place a session turns a model name into the
sealed blob it opens.
"""

from __future__ import annotations

from pathlib import Path

from flexserve.catalog import CatalogEntry, ModelKind, reserved_name, resolve
from flexserve.catalog.bundled import BUNDLED_MODELS
from flexserve.catalog.imported import find_imported, servable_imported
from flexserve.errors import ConfigError, ModelError
from flexserve.tee.sealing.store import ModelStore, StoredModel, default_store_root, store_name


def servable_models(store_root: Path | None = None) -> list[str]:
    """Names a server lists under /v1/models: installed bundled models, then imported ones."""
    bundled = [name for name, model in BUNDLED_MODELS.items() if model.installed()]
    imported = servable_imported(store_root or default_store_root())
    return bundled + [name for name in imported if not reserved_name(name)]


def _imported_blob(store: ModelStore, entry: CatalogEntry) -> StoredModel:
    found = store.latest(entry.name)
    if found is None or found.version < store.minimum_version(entry.name):
        raise ModelError(f"imported model {entry.name!r} has no installable sealed blob in "
                         f"{store.root}; import it again (flexserve import FILE --name "
                         f"{entry.name} --update)")
    return found


def _file_blob(store: ModelStore, entry: CatalogEntry) -> StoredModel:
    name = store_name(entry.name)
    if find_imported(store.root, name) is not None:
        raise ConfigError(f"{entry.path} would be sealed as {name!r}, the name of an imported "
                          f"model; import the file under another name instead")
    return store.ensure_catalog(str(entry.path))


def stored_model(store: ModelStore, name: str) -> StoredModel:
    """The sealed blob that serves ``name``: an imported model's newest version, or a bundled
    model or a GGUF path sealed first if needed."""
    entry = resolve(name, store.root)
    if entry.kind is ModelKind.IMPORTED:
        return _imported_blob(store, entry)
    if entry.path is None:
        raise ModelError(f"{entry.name} is shape-only: it has no weights to run")
    if entry.kind is ModelKind.FILE:
        return _file_blob(store, entry)
    return store.ensure_catalog(entry.name)
