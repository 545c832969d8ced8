"""The model store (sealed blobs on flash) and the ``flexserve seal`` command."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest
from sealing_world import write_tiny_gguf

from flexserve.commands import seal as seal_command
from flexserve.errors import ConfigError, ModelError, SecurityError
from flexserve.tee.sealing import (
    FileBlobReader,
    ModelStore,
    SealedModel,
    SecureDevice,
    model_id_for,
)
from flexserve.tee.sealing.store import flexserve_home, store_name

CHUNK_BYTES = 4096


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf", hidden=32, n_layers=1)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "home" / "store",
                      SecureDevice.load_or_create(tmp_path / "home" / "secure"))


def test_versions_count_up_and_raise_the_counter(store, model_path) -> None:
    first = store.seal(model_path, "tiny", chunk_bytes=CHUNK_BYTES)
    second = store.seal(model_path, "tiny", chunk_bytes=CHUNK_BYTES)
    assert (first.model_version, second.model_version) == (1, 2)
    assert first.path.name == "tiny.v1.fxsealed"
    assert first.model_id == second.model_id == model_id_for("tiny")
    assert store.versions("tiny") == [1, 2]
    assert store.minimum_version("tiny") == 2
    model, reader = store.open("tiny")
    with reader:
        assert model.model_version == 2
    with pytest.raises(SecurityError):
        store.open("tiny", 1)


def test_older_or_existing_versions_are_refused(store, model_path) -> None:
    store.seal(model_path, "tiny", 4, chunk_bytes=CHUNK_BYTES)
    with pytest.raises(ConfigError, match="older"):
        store.seal(model_path, "tiny", 3, chunk_bytes=CHUNK_BYTES)
    with pytest.raises(ConfigError, match="exists"):
        store.seal(model_path, "tiny", 4, chunk_bytes=CHUNK_BYTES)
    with pytest.raises(ConfigError):
        store.blob_path("../escape", 1)
    with pytest.raises(ModelError):
        store.open("never-sealed")


def test_models_are_sealed_on_first_use_only(store, model_path) -> None:
    first = store.ensure_sealed("tiny", model_path)
    mtime = first.path.stat().st_mtime_ns
    again = store.ensure_sealed("tiny", model_path)
    assert again == first and again.path.stat().st_mtime_ns == mtime
    assert first.version == 1 and first.blob_bytes == first.path.stat().st_size


def test_catalog_models_are_sealed_on_first_use(store, model_path) -> None:
    stored = store.ensure_catalog(str(model_path))
    assert (stored.name, stored.version) == ("tiny", 1)
    assert store.ensure_catalog(str(model_path)) == stored
    model, reader = store.open("tiny")
    with reader:
        meta = model.meta_gguf(reader)
    assert meta.architecture == "llama"
    with pytest.raises(ModelError, match="shape-only"):
        store.ensure_catalog("qwen3-0.6b")


def test_store_and_secure_storage_must_not_overlap(tmp_path) -> None:
    device = SecureDevice.load_or_create(tmp_path / "home" / "store" / "secure")
    with pytest.raises(ConfigError):
        ModelStore(tmp_path / "home" / "store", device)
    with pytest.raises(ConfigError):
        ModelStore(tmp_path / "home" / "store" / "secure" / "x", device)


def test_home_and_names(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FLEXSERVE_HOME", str(tmp_path / "fx"))
    assert flexserve_home() == tmp_path / "fx"
    monkeypatch.delenv("FLEXSERVE_HOME")
    assert flexserve_home() == Path.home() / ".local" / "share" / "flexserve"
    assert store_name("SmolLM2 135M (Q4)") == "SmolLM2-135M--Q4-"
    assert model_id_for("a") != model_id_for("b")


# -- the command ------------------------------------------------------------------------------

def run_seal(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    seal_command.add_arguments(parser)
    return seal_command.run(parser.parse_args(list(argv)))


def test_seal_command_seals_into_the_store(monkeypatch, tmp_path, model_path, capsys) -> None:
    monkeypatch.setenv("FLEXSERVE_HOME", str(tmp_path / "fx"))
    assert run_seal(str(model_path), "--chunk-kib", "4") == 0
    out = capsys.readouterr().out
    blob = tmp_path / "fx" / "store" / "tiny.v1.fxsealed"
    assert str(blob) in out
    assert f"sha256 {hashlib.sha256(blob.read_bytes()).hexdigest()}" in out
    assert f"({blob.stat().st_size} bytes" in out
    assert run_seal(str(model_path), "--version", "5", "--out", str(tmp_path / "o.fx")) == 0
    assert "version 5" in capsys.readouterr().out
    store = ModelStore.default()
    assert store.minimum_version("tiny") == 5
    with FileBlobReader(tmp_path / "o.fx") as reader:
        assert SealedModel.open(reader, store.device.keys,
                                store.device.rollback).model_version == 5


def test_seal_command_refuses_models_without_weights(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FLEXSERVE_HOME", str(tmp_path / "fx"))
    with pytest.raises(ModelError, match="shape-only"):
        run_seal("llama3.1-8b")
    with pytest.raises(ModelError):
        run_seal(str(tmp_path / "missing.gguf"))
    assert seal_command.COMMAND.name == "seal"
