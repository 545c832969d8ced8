"""The model catalog: bundled real models, the paper's shape-only models, models imported
into the store (``flexserve import``), and user files.

``resolve(name_or_path)`` is how every front end turns what a user typed into a model.
Imported models are found through their sidecars in the store (``store_root``, by default
``$FLEXSERVE_HOME/store``); they have weights, but only sealed (``entry.path`` is None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from flexserve.catalog.bundled import BUNDLED_MODELS, DEFAULT_MODEL, BundledModel
from flexserve.catalog.gguf_check import quantization_label
from flexserve.catalog.imported import ImportedModel, find_imported, imported_models
from flexserve.catalog.shapes import PAPER_MODELS, layer_sizes
from flexserve.engine.config import ModelConfig
from flexserve.errors import ModelNotFoundError
from flexserve.tee.sealing.store import default_store_root, valid_store_name

__all__ = [
    "DEFAULT_MODEL",
    "CatalogEntry",
    "ModelKind",
    "list_models",
    "reserved_name",
    "resolve",
]


class ModelKind(Enum):
    BUNDLED = "bundled"
    SHAPE_ONLY = "shape-only"
    IMPORTED = "imported"
    FILE = "file"


@dataclass(frozen=True)
class CatalogEntry:
    """What the catalog knows of one model."""

    name: str
    kind: ModelKind
    architecture: str
    params: int
    quantization: str
    size_bytes: int
    n_layers: int
    path: Path | None = None  # the plaintext GGUF, where the normal world has one
    shape: ModelConfig | None = None
    imported: ImportedModel | None = None  # the sidecar facts of an imported model

    @property
    def has_weights(self) -> bool:
        return self.path is not None or self.imported is not None


def _entry_from_gguf(name: str, path: Path, kind: ModelKind) -> CatalogEntry:
    from flexserve.engine.gguf_file import GGUFFile

    gguf_file = GGUFFile.open(path)
    arch = gguf_file.architecture
    params = sum(math.prod(t.shape) for t in gguf_file.tensors.values())
    n_layers = int(gguf_file.metadata.get(f"{arch}.block_count", 0))
    return CatalogEntry(
        name=name,
        kind=kind,
        architecture=arch,
        params=params,
        quantization=quantization_label(gguf_file.metadata),
        size_bytes=path.stat().st_size,
        n_layers=n_layers,
        path=path,
    )


def _entry_from_bundled(model: BundledModel) -> CatalogEntry:
    return _entry_from_gguf(model.name, model.path(), ModelKind.BUNDLED)


def _entry_from_shape(name: str, shape: ModelConfig) -> CatalogEntry:
    layers = layer_sizes(shape)
    return CatalogEntry(
        name=name,
        kind=ModelKind.SHAPE_ONLY,
        architecture=shape.architecture,
        params=sum(layer.params for layer in layers),
        quantization="Q8_0",
        size_bytes=sum(layer.q8_0_bytes for layer in layers),
        n_layers=shape.n_layers,
        shape=shape,
    )


def _entry_from_imported(model: ImportedModel) -> CatalogEntry:
    return CatalogEntry(
        name=model.name,
        kind=ModelKind.IMPORTED,
        architecture=model.architecture,
        params=model.params,
        quantization=model.quantization,
        size_bytes=model.size_bytes,
        n_layers=model.n_layers,
        imported=model,
    )


def reserved_name(name: str) -> bool:
    """A bundled or shape-only name (in any letter case): an import may not take it."""
    return name.lower() in {n.lower() for n in (*BUNDLED_MODELS, *PAPER_MODELS)}


def _find_imported(key: str, store_root: Path | None) -> ImportedModel | None:
    if not valid_store_name(key) or key.endswith(".gguf"):
        return None
    return find_imported(store_root or default_store_root(), key)


def resolve(name_or_path: str | None = None, store_root: Path | None = None) -> CatalogEntry:
    """Find a model by catalog name, imported name (in ``store_root``) or GGUF file path."""
    key = name_or_path or DEFAULT_MODEL
    if key in BUNDLED_MODELS:
        return _entry_from_bundled(BUNDLED_MODELS[key])
    if key in PAPER_MODELS:
        return _entry_from_shape(key, PAPER_MODELS[key])
    imported = _find_imported(key, store_root)
    if imported is not None:
        return _entry_from_imported(imported)
    path = Path(key).expanduser()
    if path.suffix == ".gguf" or path.exists():
        if not path.is_file():
            raise ModelNotFoundError(f"no such model file: {path}")
        return _entry_from_gguf(path.stem, path, ModelKind.FILE)
    known = ", ".join([*BUNDLED_MODELS, *PAPER_MODELS])
    raise ModelNotFoundError(f"unknown model {key!r}; known models: {known}, an imported "
                             f"model (flexserve models), or a .gguf path")


def list_models(store_root: Path | None = None) -> list[CatalogEntry | BundledModel]:
    """Every catalog model; bundled models whose package is missing come back as-is."""
    entries: list[CatalogEntry | BundledModel] = []
    for model in BUNDLED_MODELS.values():
        entries.append(_entry_from_bundled(model) if model.installed() else model)
    entries.extend(_entry_from_shape(name, shape) for name, shape in PAPER_MODELS.items())
    entries.extend(_entry_from_imported(model)
                   for model in imported_models(store_root or default_store_root())
                   if not reserved_name(model.name))  # resolve() never reaches those
    return entries
