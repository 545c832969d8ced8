"""Sealed model container: round trips, engine compatibility, streaming, API contract."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from sealing_world import write_tiny_gguf

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layers import group_bytes, layer_groups, load_group
from flexserve.errors import ConfigError, ModelFormatError, ModelNotFoundError
from flexserve.soc.flash import FlashStorage
from flexserve.tee.sealing import (
    BytesBlobReader,
    DeviceKeys,
    FileBlobReader,
    FlashBlobReader,
    RollbackCounter,
    SealedModel,
    seal_model,
)

CHUNK_BYTES = 4096


@pytest.fixture
def keys() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture
def rollback(tmp_path: Path, keys: DeviceKeys) -> RollbackCounter:
    return RollbackCounter(tmp_path / "secure" / "rpmb", keys)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


@pytest.fixture
def sealed_path(tmp_path: Path, model_path: Path, keys: DeviceKeys) -> Path:
    out = tmp_path / "flash" / "tiny.v1.fxsealed"
    seal_model(model_path, out, keys, 1, CHUNK_BYTES)
    return out


def unseal_all(model: SealedModel, reader: object) -> dict[str, bytearray]:
    buffers = {}
    for unit in model.units:
        buffers[unit.name] = bytearray(unit.n_bytes)
        model.read_unit_into(reader, unit, buffers[unit.name])
    return buffers


def assert_round_trip(gguf_path: Path, model: SealedModel, reader: object) -> None:
    buffers = unseal_all(model, reader)
    with GGUFFile.open(gguf_path) as plain:
        assert bytes(buffers["meta"]) == gguf_path.read_bytes()[: plain.data_offset_bytes]
        groups = layer_groups(plain)
        assert [u.name for u in model.weight_units] == [g.name for g in groups]
        for group in groups:
            assert bytes(buffers[group.name]) == group_bytes(plain, group), group.name


# -- round trips ----------------------------------------------------------------------------

def test_every_unit_round_trips_to_group_bytes(model_path, sealed_path, keys, rollback) -> None:
    with FileBlobReader(sealed_path) as reader:
        model = SealedModel.open(reader, keys, rollback)
        assert_round_trip(model_path, model, reader)


def test_units_are_split_into_chunks(sealed_path, keys, rollback) -> None:
    with FileBlobReader(sealed_path) as reader:
        model = SealedModel.open(reader, keys, rollback)
    assert [u.name for u in model.units] == ["meta", "embed", "blk.0", "blk.1", "output"]
    global_indices = [c.global_index for u in model.units for c in u.chunks]
    assert global_indices == list(range(len(global_indices)))
    for unit in model.units:
        assert len(unit.chunks) == -(-unit.n_bytes // CHUNK_BYTES)
        assert sum(c.plaintext_bytes for c in unit.chunks) == unit.n_bytes
        assert [c.is_last_in_unit for c in unit.chunks] == [False] * (len(unit.chunks) - 1) + [
            True]
    assert len(model.unit("blk.0").chunks) > 30
    flags = [c.is_last_in_file for u in model.units for c in u.chunks]
    assert flags == [False] * (len(flags) - 1) + [True]
    assert model.blob_bytes == sealed_path.stat().st_size


def test_engine_builds_identical_weights_without_the_plaintext_file(
        model_path, sealed_path, keys, rollback) -> None:
    with FileBlobReader(sealed_path) as reader:
        model = SealedModel.open(reader, keys, rollback)
        meta = model.meta_gguf(reader)
        buffers = unseal_all(model, reader)
    sealed_groups = model.layer_groups(meta)
    with GGUFFile.open(model_path) as plain:
        assert ModelConfig.from_gguf(meta) == ModelConfig.from_gguf(plain)
        assert meta.tensors == plain.tensors
        for sealed_group, group in zip(sealed_groups, layer_groups(plain), strict=True):
            assert sealed_group == group
            ours = load_group(sealed_group, buffers[group.name])
            theirs = load_group(group, group_bytes(plain, group))
            assert ours.keys() == theirs.keys()
            assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_meta_index_serves_no_tensor_bytes(sealed_path, keys, rollback) -> None:
    with FileBlobReader(sealed_path) as reader:
        meta = SealedModel.open(reader, keys, rollback).meta_gguf(reader)
    with pytest.raises(ModelFormatError):
        meta.tensor_bytes("token_embd.weight")


def test_whole_unit_and_single_chunk_decryption_agree(sealed_path, keys, rollback) -> None:
    blob = sealed_path.read_bytes()
    reader = BytesBlobReader(blob)
    model = SealedModel.open(reader, keys, rollback)
    unit = model.unit("blk.1")
    stored = blob[unit.file_offset_bytes : unit.file_offset_bytes + unit.ciphertext_bytes]
    whole = bytearray(unit.n_bytes)
    assert model.decrypt_unit_into(unit, memoryview(stored), whole) == unit.n_bytes
    frames = np.zeros(unit.n_bytes, dtype=np.uint8)  # e.g. a view over Flex-Mem frames
    for chunk in unit.chunks:
        ciphertext = np.frombuffer(blob, np.uint8, chunk.ciphertext_bytes,
                                   chunk.file_offset_bytes)
        target = memoryview(frames)[chunk.unit_offset_bytes :]
        assert model.decrypt_chunk_into("blk.1", chunk.index_in_unit, ciphertext, target) == (
            chunk.plaintext_bytes)
    assert frames.tobytes() == bytes(whole)


def test_flash_reader_reads_through_the_normal_world_storage(tmp_path, model_path, keys,
                                                            rollback) -> None:
    storage = FlashStorage(tmp_path / "flash-root")
    seal_model(model_path, storage.path("models/tiny.fxsealed"), keys, 3, CHUNK_BYTES)
    reader = FlashBlobReader(storage, "models/tiny.fxsealed")
    model = SealedModel.open(reader, keys, rollback)
    assert model.model_version == 3
    assert_round_trip(model_path, model, reader)


@pytest.mark.slow
def test_smollm2_round_trip(smollm2_path: Path, tmp_path: Path, keys, rollback) -> None:
    """Every unit of the real model decrypts to its plaintext; the engine builds the same
    config, tokenizer and weights from the sealed blob alone."""
    from flexserve.engine.tokenizer import Tokenizer

    out = tmp_path / "smollm2.fxsealed"
    result = seal_model(smollm2_path, out, keys, 1)
    assert result.blob_sha256 == hashlib.sha256(out.read_bytes()).digest()
    with FileBlobReader(out) as reader, GGUFFile.open(smollm2_path) as plain:
        model = SealedModel.open(reader, keys, rollback)
        assert_round_trip(smollm2_path, model, reader)
        meta = model.meta_gguf(reader)
        assert ModelConfig.from_gguf(meta) == ModelConfig.from_gguf(plain)
        prompt = "Sealed weights stay secret."
        assert Tokenizer.from_metadata(meta.metadata).encode(prompt) == (
            Tokenizer.from_metadata(plain.metadata).encode(prompt))
        for group, reference in zip(model.layer_groups(meta), layer_groups(plain), strict=True):
            buf = bytearray(group.n_bytes)
            model.read_unit_into(reader, group.name, buf)
            ours = load_group(group, buf)
            theirs = load_group(reference, group_bytes(plain, reference))
            assert all(torch.equal(ours[name], theirs[name]) for name in theirs), group.name


# -- sealing: streaming, no plaintext at rest, randomization --------------------------------

def test_sealing_streams_one_chunk_at_a_time(tmp_path, keys) -> None:
    big = write_tiny_gguf(tmp_path / "big.gguf", hidden=384, n_layers=2)  # ~11 MiB
    chunk_bytes = 64 * 1024
    tracemalloc.start()
    try:
        seal_model(big, tmp_path / "big.fxsealed", keys, 1, chunk_bytes)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert big.stat().st_size > 10 * 1024 * 1024
    assert peak_bytes < 6 * chunk_bytes  # a few chunks; the model is ~170 chunks


def test_no_plaintext_reaches_the_disk(tmp_path, model_path, sealed_path) -> None:
    blob = sealed_path.read_bytes()
    plain = model_path.read_bytes()
    for marker in (b"GGUF", b"general.architecture", b"llama", b"token_embd.weight"):
        assert marker not in blob
    with GGUFFile.open(model_path) as parsed:
        for info in list(parsed.tensors.values())[:6]:
            window = plain[info.offset_bytes : info.offset_bytes + 32]
            assert window not in blob
    assert sorted(p.name for p in sealed_path.parent.iterdir()) == [sealed_path.name]


def test_two_seals_of_one_model_differ_but_both_open(tmp_path, model_path, keys,
                                                     rollback) -> None:
    first = seal_model(model_path, tmp_path / "a.fxsealed", keys, 1, CHUNK_BYTES)
    second = seal_model(model_path, tmp_path / "b.fxsealed", keys, 1, CHUNK_BYTES)
    assert first.blob_sha256 != second.blob_sha256
    assert first.model_id == second.model_id == hashlib.sha256(model_path.read_bytes()).digest()
    for result in (first, second):
        with FileBlobReader(result.path) as reader:
            SealedModel.open(reader, keys, rollback)


def test_seal_result_describes_the_blob(model_path, tmp_path, keys) -> None:
    seen: list[tuple[int, int]] = []
    out = tmp_path / "r.fxsealed"
    result = seal_model(model_path, out, keys, 7, CHUNK_BYTES, model_id=b"\x01" * 32,
                        progress=lambda done, total: seen.append((done, total)))
    assert result.model_id == b"\x01" * 32 and result.model_version == 7
    assert result.blob_bytes == out.stat().st_size
    assert result.blob_sha256 == hashlib.sha256(out.read_bytes()).digest()
    assert len(seen) == result.n_chunks
    assert seen[-1] == (result.plaintext_bytes, result.plaintext_bytes)


@pytest.mark.parametrize("kwargs", [{"chunk_bytes": 1000}, {"chunk_bytes": 0},
                                    {"model_version": -1}, {"model_version": 1 << 64},
                                    {"model_id": b"short"}])
def test_bad_seal_arguments_are_config_errors(model_path, tmp_path, keys, kwargs) -> None:
    args = {"model_version": 1, "chunk_bytes": CHUNK_BYTES, **kwargs}
    with pytest.raises(ConfigError):
        seal_model(model_path, tmp_path / "x.fxsealed", keys, **args)
    assert not (tmp_path / "x.fxsealed").exists()


def test_bad_model_inputs_are_model_errors(tmp_path, model_path, keys) -> None:
    with pytest.raises(ModelNotFoundError):
        seal_model(tmp_path / "missing.gguf", tmp_path / "x.fxsealed", keys, 1)
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelFormatError):
        seal_model(bogus, tmp_path / "x.fxsealed", keys, 1)
    with pytest.raises(ConfigError):
        seal_model(model_path, model_path, keys, 1)
    assert not list(tmp_path.glob("*.fxsealed*"))


# -- caller errors are not security errors ------------------------------------------------

def test_caller_mistakes_are_config_errors(sealed_path, keys, rollback) -> None:
    blob = sealed_path.read_bytes()
    model = SealedModel.open(BytesBlobReader(blob), keys, rollback)
    chunk = model.unit("embed").chunks[0]
    ciphertext = blob[chunk.file_offset_bytes : chunk.file_offset_bytes + chunk.ciphertext_bytes]
    small = bytearray([7]) * (chunk.plaintext_bytes - 1)
    with pytest.raises(ConfigError):
        model.decrypt_chunk_into("embed", 0, ciphertext, small)
    assert not any(small)
    with pytest.raises(ConfigError):
        model.decrypt_chunk_into("embed", 0, ciphertext, bytes(chunk.plaintext_bytes))
    with pytest.raises(ConfigError):
        model.decrypt_chunk_into("nope", 0, ciphertext, bytearray(CHUNK_BYTES))
    with pytest.raises(ConfigError):
        model.decrypt_chunk_into("embed", 10_000, ciphertext, bytearray(CHUNK_BYTES))
    model.close()
    with pytest.raises(ConfigError):
        model.decrypt_chunk_into("embed", 0, ciphertext, bytearray(CHUNK_BYTES))
