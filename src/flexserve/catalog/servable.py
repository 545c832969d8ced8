"""Which models a device session can serve, and their sealed blobs in the store.

A servable model is one with weights: a bundled model (sealed into the store on first use) or a
``.gguf`` path. ``stored_model`` is the one place a session turns a model name into the sealed
blob it opens.
"""

from __future__ import annotations

from flexserve.catalog import ModelKind, resolve
from flexserve.catalog.bundled import BUNDLED_MODELS
from flexserve.errors import ModelError
from flexserve.tee.sealing.store import ModelStore, StoredModel


def servable_models() -> list[str]:
    """Names a server lists under /v1/models: the installed bundled models."""
    return [name for name, model in BUNDLED_MODELS.items() if model.installed()]


def stored_model(store: ModelStore, name: str) -> StoredModel:
    """The sealed blob that serves ``name``, sealing a bundled model or a GGUF path first."""
    entry = resolve(name)
    if entry.path is None:
        raise ModelError(f"{entry.name} is shape-only: it has no weights to run")
    key = str(entry.path) if entry.kind is ModelKind.FILE else entry.name
    return store.ensure_catalog(key)
