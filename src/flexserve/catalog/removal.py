"""``rm``: which names may be removed from the store, and removing them.

Shape-only names have nothing in the store and are refused. A bundled model's sealed copy may
go (it is sealed again on next use); an imported model loses its blobs and its sidecar, so it
leaves the catalog. Anti-rollback counters stay where they are (see
:meth:`ModelStore.remove`): a removed old version must never become installable again.
"""

from __future__ import annotations

from pathlib import Path

from flexserve.catalog import ModelKind, resolve
from flexserve.errors import ConfigError, ModelError, ModelNotFoundError
from flexserve.tee.sealing.store import ModelStore, store_name, valid_store_name


def removal_target(store: ModelStore, name: str) -> str:
    """The store name ``rm NAME`` would clear; a clear error if there is nothing to remove."""
    if not valid_store_name(name):
        raise ConfigError(f"invalid model name {name!r}")
    try:
        entry = resolve(name, store.root)
    except ModelError:  # not installed, unknown, or a malformed sidecar: still removable
        entry = None
    if entry is not None and entry.kind is ModelKind.SHAPE_ONLY:
        raise ConfigError(f"{name} is a shape-only model: nothing of it is in the store")
    if entry is not None and entry.kind is ModelKind.FILE:
        raise ConfigError(f"{name} is a file path, not a model name in the store")
    target = store_name(name)
    if not store.versions(target) and not store.sidecar_path(target).exists():
        raise ModelNotFoundError(f"nothing named {name!r} in the store {store.root}")
    return target


def remove_model(store: ModelStore, name: str) -> list[Path]:
    """Remove every sealed version and the sidecar of ``name``; returns the removed paths."""
    return store.remove(removal_target(store, name))
