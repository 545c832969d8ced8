"""The model catalog: bundled real models, the paper's shape-only models, and user files.

``resolve(name_or_path)`` is how every front end turns what a user typed into a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from flexserve.catalog.bundled import BUNDLED_MODELS, DEFAULT_MODEL, BundledModel
from flexserve.catalog.shapes import PAPER_MODELS, layer_sizes
from flexserve.engine.config import ModelConfig
from flexserve.errors import ModelNotFoundError

__all__ = [
    "DEFAULT_MODEL",
    "CatalogEntry",
    "ModelKind",
    "list_models",
    "resolve",
]


class ModelKind(Enum):
    BUNDLED = "bundled"
    SHAPE_ONLY = "shape-only"
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
    path: Path | None = None
    shape: ModelConfig | None = None

    @property
    def has_weights(self) -> bool:
        return self.path is not None


def _quantization_label(metadata: dict) -> str:
    import gguf

    file_type = metadata.get("general.file_type")
    if file_type is None:
        return "unknown"
    try:
        return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type {file_type}"


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
        quantization=_quantization_label(gguf_file.metadata),
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


def resolve(name_or_path: str | None = None) -> CatalogEntry:
    """Find a model by catalog name, or by the path of a GGUF file."""
    key = name_or_path or DEFAULT_MODEL
    if key in BUNDLED_MODELS:
        return _entry_from_bundled(BUNDLED_MODELS[key])
    if key in PAPER_MODELS:
        return _entry_from_shape(key, PAPER_MODELS[key])
    path = Path(key).expanduser()
    if path.suffix == ".gguf" or path.exists():
        if not path.is_file():
            raise ModelNotFoundError(f"no such model file: {path}")
        return _entry_from_gguf(path.stem, path, ModelKind.FILE)
    known = ", ".join([*BUNDLED_MODELS, *PAPER_MODELS])
    raise ModelNotFoundError(f"unknown model {key!r}; known models: {known}, or a .gguf path")


def list_models() -> list[CatalogEntry | BundledModel]:
    """Every catalog model; bundled models whose package is missing come back as-is."""
    entries: list[CatalogEntry | BundledModel] = []
    for model in BUNDLED_MODELS.values():
        entries.append(_entry_from_bundled(model) if model.installed() else model)
    entries.extend(_entry_from_shape(name, shape) for name, shape in PAPER_MODELS.items())
    return entries
