"""Imported models: the public facts of a user's GGUF, kept in a sidecar beside its blobs.

``<store>/<name>.model.json`` says what the normal world may know of an imported model:
architecture, parameter count, quantization, layers, context length, source size and sha256,
import time and the version sealed. The weights and the GGUF metadata (tokenizer, chat
template) stay inside the sealed blob. The sidecar is untrusted normal-world data: it serves
listings only, and the secure side authenticates the blob itself whatever the sidecar says.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from flexserve.catalog.gguf_check import GGUFFacts
from flexserve.errors import ModelError
from flexserve.tee.sealing.store import SIDECAR_SUFFIX, sidecar_path

SIDECAR_FORMAT = "flexserve-imported-model/1"


@dataclass(frozen=True)
class ImportedModel:
    name: str
    architecture: str
    params: int
    quantization: str
    tensor_types: tuple[str, ...]
    n_layers: int
    context_length: int
    size_bytes: int
    source_file: str
    source_sha256: str
    imported_at: str
    version: int
    blob_sha256: str

    @classmethod
    def from_facts(cls, name: str, facts: GGUFFacts, **import_facts: Any) -> ImportedModel:
        return cls(name=name, **asdict(facts), **import_facts)

    def to_json(self) -> str:
        return json.dumps({"format": SIDECAR_FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, where: Path) -> ImportedModel:
        try:
            raw = json.loads(text)
            if raw.pop("format") != SIDECAR_FORMAT:
                raise ValueError("unknown format")
            raw["tensor_types"] = tuple(raw["tensor_types"])
            model = cls(**{f.name: raw.pop(f.name) for f in fields(cls)})
            if raw or not _well_typed(model):
                raise ValueError("unexpected fields")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelError(f"the model sidecar {where} is malformed ({exc}); "
                             f"`flexserve rm` and import the model again") from exc
        return model


def _well_typed(model: ImportedModel) -> bool:
    types = {f.name: f.type for f in fields(model)}
    expected = {"str": str, "int": int, "tuple[str, ...]": tuple}
    return all(isinstance(getattr(model, name), expected[kind]) and
               not isinstance(getattr(model, name), bool) for name, kind in types.items())


def write_sidecar(path: Path, model: ImportedModel) -> None:
    """Write atomically: a reader sees the old sidecar or the new one, never half of one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(model.to_json(), encoding="utf-8")
    os.replace(partial, path)


def read_sidecar(path: Path) -> ImportedModel:
    model = ImportedModel.from_json(path.read_text(encoding="utf-8"), path)
    if model.name != path.name.removesuffix(SIDECAR_SUFFIX):
        raise ModelError(f"the model sidecar {path} names another model ({model.name!r}); "
                         f"`flexserve rm` and import the model again")
    return model


def find_imported(store_root: Path, name: str) -> ImportedModel | None:
    path = sidecar_path(store_root, name)
    return read_sidecar(path) if path.is_file() else None


def imported_models(store_root: Path) -> list[ImportedModel]:
    """Every imported model with a sidecar in the store, by name."""
    root = Path(store_root)
    if not root.is_dir():
        return []
    return [read_sidecar(p) for p in sorted(root.glob(f"*{SIDECAR_SUFFIX}"))]


def servable_imported(store_root: Path) -> list[str]:
    """Names of the imported models whose sidecar reads well; a malformed one is left out (a
    server keeps listing the others) until ``rm`` and a new import replace it."""
    names = []
    for path in sorted(Path(store_root).glob(f"*{SIDECAR_SUFFIX}")):
        try:
            names.append(read_sidecar(path).name)
        except ModelError:
            continue
    return names
