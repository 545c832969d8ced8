"""Everything the normal world may know of one catalog model, for ``flexserve models show``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flexserve.catalog import CatalogEntry, ModelKind
from flexserve.catalog.imported import ImportedModel
from flexserve.tee.sealing.store import StoredModel, store_name, stored_blobs


@dataclass(frozen=True)
class ModelDetails:
    entry: CatalogEntry
    context_length: int
    stored: tuple[StoredModel, ...]
    sidecar: ImportedModel | None


def _context_length(entry: CatalogEntry) -> int:
    if entry.imported is not None:
        return entry.imported.context_length
    if entry.shape is not None:
        return entry.shape.context_length
    from flexserve.engine.config import ModelConfig
    from flexserve.engine.gguf_file import GGUFFile

    assert entry.path is not None
    with GGUFFile.open(entry.path) as gguf_file:
        return ModelConfig.from_gguf(gguf_file).context_length


def store_blobs(entry: CatalogEntry, store_root: Path) -> tuple[StoredModel, ...]:
    """The entry's sealed versions in the store (none for a shape-only model)."""
    if entry.kind is ModelKind.SHAPE_ONLY:
        return ()
    return tuple(stored_blobs(store_root, store_name(entry.name)))


def model_details(entry: CatalogEntry, store_root: Path) -> ModelDetails:
    return ModelDetails(entry, _context_length(entry), store_blobs(entry, store_root),
                        entry.imported)
