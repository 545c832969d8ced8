"""Attacks on sealed models at rest: every one is refused with the same detail-free error.

The attacker is the normal-world kernel: it owns the flash and the file service, so it can
flip, swap, drop, append, truncate and splice bytes of any sealed blob, replay an old blob,
copy a blob from another device, or hand in a plaintext GGUF. It never holds device keys.
The victim (the framework TA) opens blobs with its own :class:`DeviceKeys` and decrypts into
output buffers; after a refusal those buffers must hold zeros only.
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tee"))

from sealing_world import write_tiny_gguf

from flexserve.errors import SecurityError
from flexserve.tee.sealing import (
    HEADER_BYTES,
    HEADER_FIELDS,
    BytesBlobReader,
    DeviceKeys,
    RollbackCounter,
    SealedModel,
    SealedUnit,
    seal_model,
)

CHUNK_BYTES = 4096
FILL = 0xA5


@pytest.fixture
def keys() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture
def rollback(tmp_path: Path, keys: DeviceKeys) -> RollbackCounter:
    return RollbackCounter(tmp_path / "secure" / "rpmb", keys)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf", seed=0)


def seal_bytes(gguf_path: Path, out: Path, keys: DeviceKeys, version: int = 1,
               model_id: bytes | None = None) -> bytes:
    seal_model(gguf_path, out, keys, version, CHUNK_BYTES, model_id=model_id)
    return out.read_bytes()


@pytest.fixture
def blob(tmp_path: Path, model_path: Path, keys: DeviceKeys) -> bytes:
    return seal_bytes(model_path, tmp_path / "tiny.v1.fxsealed", keys)


@pytest.fixture
def layout(blob: bytes, keys: DeviceKeys, tmp_path: Path) -> SealedModel:
    """The honest geometry of ``blob`` (opened with a throwaway counter)."""
    return SealedModel.open(BytesBlobReader(blob), keys,
                            RollbackCounter(tmp_path / "layout-rpmb", keys))


# -- helpers ------------------------------------------------------------------------------

def assert_refused(excinfo: pytest.ExceptionInfo[SecurityError]) -> None:
    """Exactly SecurityError, with the fixed message and no chained detail."""
    exc = excinfo.value
    assert type(exc) is SecurityError
    assert exc.args == SecurityError().args
    assert exc.__cause__ is None


def refuse_open(data: bytes | bytearray, keys: DeviceKeys, rollback: RollbackCounter) -> None:
    with pytest.raises(SecurityError) as excinfo:
        SealedModel.open(BytesBlobReader(bytes(data)), keys, rollback)
    assert_refused(excinfo)


def refuse_unit(data: bytes | bytearray, keys: DeviceKeys, rollback: RollbackCounter,
                unit: str, reader: object | None = None) -> None:
    """The blob opens, but reading ``unit`` is refused and leaves its buffer zeroed."""
    reader = reader if reader is not None else BytesBlobReader(bytes(data))
    model = SealedModel.open(reader, keys, rollback)
    out = bytearray([FILL]) * model.unit(unit).n_bytes
    with pytest.raises(SecurityError) as excinfo:
        model.read_unit_into(reader, unit, out)
    assert_refused(excinfo)
    assert not any(out)


def stored(blob: bytes | bytearray, unit: SealedUnit, index: int) -> bytes:
    chunk = unit.chunks[index]
    return bytes(blob[chunk.file_offset_bytes : chunk.file_offset_bytes + chunk.ciphertext_bytes])


def span(unit: SealedUnit, index: int) -> slice:
    chunk = unit.chunks[index]
    return slice(chunk.file_offset_bytes, chunk.file_offset_bytes + chunk.ciphertext_bytes)


def flipped(data: bytes, offset: int, bit: int = 0) -> bytearray:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return out


class SizeLyingReader(BytesBlobReader):
    """A file service that reports whatever size the victim expects."""

    def __init__(self, data: bytes | bytearray, reported: int) -> None:
        super().__init__(bytes(data))
        self._reported = reported

    def size_bytes(self) -> int:
        return self._reported


def test_the_honest_blob_opens_and_decrypts(blob, keys, rollback) -> None:
    reader = BytesBlobReader(blob)
    model = SealedModel.open(reader, keys, rollback)
    assert len(model.unit("blk.0").chunks) > 2
    for unit in model.units:
        out = bytearray(unit.n_bytes)
        assert model.read_unit_into(reader, unit, out) == unit.n_bytes


# -- header and manifest --------------------------------------------------------------------

@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("field", list(HEADER_FIELDS))
def test_bit_flip_in_any_header_field_is_refused(blob, keys, rollback, layout, field,
                                                 where) -> None:
    offset, size = HEADER_FIELDS[field]
    byte = offset if where == "first" else offset + size - 1
    refuse_open(flipped(blob, byte, bit=3), keys, rollback)
    assert rollback.minimum_version(layout.model_id) == 0  # nothing was installed


@pytest.mark.parametrize("where", [0, 0.5, -1])
def test_bit_flip_in_the_manifest_is_refused(blob, keys, rollback, layout, where) -> None:
    manifest_bytes = layout.header.manifest_bytes
    index = int(where * manifest_bytes) if where != -1 else manifest_bytes - 1
    refuse_open(flipped(blob, HEADER_BYTES + index), keys, rollback)


def test_header_from_another_version_on_this_body_is_refused(tmp_path, blob, model_path,
                                                             keys, rollback) -> None:
    other = seal_bytes(model_path, tmp_path / "v2.fxsealed", keys, version=2)
    refuse_open(other[:HEADER_BYTES] + blob[HEADER_BYTES:], keys, rollback)


# -- chunks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("position", ["first", "middle", "last"])
@pytest.mark.parametrize("part", ["ciphertext", "tag"])
def test_bit_flip_in_a_chunk_is_refused(blob, keys, rollback, layout, position, part) -> None:
    units = {"first": layout.meta_unit, "middle": layout.unit("blk.0"),
             "last": layout.units[-1]}
    unit = units[position]
    index = {"first": 0, "middle": len(unit.chunks) // 2, "last": len(unit.chunks) - 1}[position]
    where = span(unit, index)
    byte = where.start + 7 if part == "ciphertext" else where.stop - 1
    refuse_unit(flipped(blob, byte, bit=5), keys, rollback, unit.name)


def test_bit_flip_in_the_meta_unit_refuses_the_gguf_index(blob, keys, rollback, layout) -> None:
    tampered = flipped(blob, span(layout.meta_unit, 0).start + 100)
    reader = BytesBlobReader(bytes(tampered))
    model = SealedModel.open(reader, keys, rollback)
    with pytest.raises(SecurityError) as excinfo:
        model.meta_gguf(reader)
    assert_refused(excinfo)


def test_chunks_swapped_within_a_layer_are_refused(blob, keys, rollback, layout) -> None:
    unit = layout.unit("blk.0")
    tampered = bytearray(blob)
    tampered[span(unit, 0)], tampered[span(unit, 1)] = stored(blob, unit, 1), stored(blob, unit, 0)
    refuse_unit(tampered, keys, rollback, "blk.0")


def test_chunk_handed_in_for_another_index_is_refused(blob, keys, rollback, layout) -> None:
    model = SealedModel.open(BytesBlobReader(blob), keys, rollback)
    unit = model.unit("blk.0")
    out = bytearray([FILL]) * CHUNK_BYTES
    with pytest.raises(SecurityError) as excinfo:
        model.decrypt_chunk_into(unit, 0, stored(blob, unit, 1), out)
    assert_refused(excinfo)
    assert not any(out)


def test_chunks_swapped_across_layers_are_refused(blob, keys, rollback, layout) -> None:
    first, second = layout.unit("blk.0"), layout.unit("blk.1")
    tampered = bytearray(blob)
    tampered[span(first, 0)] = stored(blob, second, 0)
    tampered[span(second, 0)] = stored(blob, first, 0)
    refuse_unit(tampered, keys, rollback, "blk.0")
    refuse_unit(tampered, keys, rollback, "blk.1")


def test_a_truncated_chunk_is_refused(blob, keys, rollback, layout) -> None:
    unit = layout.unit("blk.0")
    model = SealedModel.open(BytesBlobReader(blob), keys, rollback)
    out = bytearray([FILL]) * CHUNK_BYTES
    with pytest.raises(SecurityError) as excinfo:
        model.decrypt_chunk_into("blk.0", 1, stored(blob, unit, 1)[:-1], out)
    assert_refused(excinfo)
    assert not any(out)


def test_a_truncated_file_is_refused(blob, keys, rollback) -> None:
    refuse_open(blob[:-1], keys, rollback)


def test_a_chunk_cut_short_inside_the_file_is_refused(blob, keys, rollback, layout) -> None:
    unit = layout.unit("blk.0")
    where = span(unit, 1)
    tampered = blob[: where.stop - 1] + blob[where.stop :]
    refuse_open(tampered, keys, rollback)
    lying = SizeLyingReader(tampered + b"\0", len(blob))
    refuse_unit(tampered, keys, rollback, "blk.0", reader=lying)


def test_a_dropped_chunk_is_refused(blob, keys, rollback, layout) -> None:
    unit = layout.unit("blk.0")
    where = span(unit, 1)
    tampered = blob[: where.start] + blob[where.stop :]
    refuse_open(tampered, keys, rollback)
    padded = tampered + bytes(len(blob) - len(tampered))
    refuse_unit(padded, keys, rollback, "blk.0", reader=SizeLyingReader(padded, len(blob)))
    model = SealedModel.open(BytesBlobReader(blob), keys, rollback)
    unit_bytes = blob[unit.file_offset_bytes : unit.file_offset_bytes + unit.ciphertext_bytes]
    short = unit_bytes[: where.start - unit.file_offset_bytes] + unit_bytes[
        where.stop - unit.file_offset_bytes :]
    out = bytearray([FILL]) * unit.n_bytes
    with pytest.raises(SecurityError) as excinfo:
        model.decrypt_unit_into(unit, short, out)
    assert_refused(excinfo)
    assert not any(out)


def test_an_appended_chunk_is_refused(blob, keys, rollback, layout) -> None:
    last = layout.units[-1]
    extra = stored(blob, last, len(last.chunks) - 1)
    refuse_open(blob + extra, keys, rollback)
    model = SealedModel.open(BytesBlobReader(blob), keys, rollback)
    unit_bytes = blob[last.file_offset_bytes :]
    out = bytearray([FILL]) * last.n_bytes
    with pytest.raises(SecurityError) as excinfo:
        model.decrypt_unit_into(last, unit_bytes + extra, out)
    assert_refused(excinfo)
    assert not any(out)


def test_a_chunk_spliced_from_another_model_is_refused(tmp_path, blob, keys, rollback,
                                                       layout) -> None:
    other_path = write_tiny_gguf(tmp_path / "other.gguf", seed=1)
    other = seal_bytes(other_path, tmp_path / "other.fxsealed", keys,
                       model_id=layout.model_id)  # even under the same model id
    unit = layout.unit("blk.1")
    tampered = bytearray(blob)
    tampered[span(unit, 2)] = stored(other, unit, 2)
    refuse_unit(tampered, keys, rollback, "blk.1")


def test_a_chunk_spliced_from_another_version_is_refused(tmp_path, blob, model_path, keys,
                                                         rollback, layout) -> None:
    newer = seal_bytes(model_path, tmp_path / "v2.fxsealed", keys, version=2)
    unit = layout.unit("embed")
    tampered = bytearray(blob)
    tampered[span(unit, 0)] = stored(newer, unit, 0)
    refuse_unit(tampered, keys, rollback, "embed")


# -- replay, device binding, sizes, plaintext ---------------------------------------------

def test_rolled_back_version_is_refused_after_a_newer_one(tmp_path, model_path, keys,
                                                          rollback) -> None:
    model_id = bytes(range(32))
    old = seal_bytes(model_path, tmp_path / "v1.fxsealed", keys, 1, model_id)
    new = seal_bytes(model_path, tmp_path / "v2.fxsealed", keys, 2, model_id)
    assert SealedModel.open(BytesBlobReader(old), keys, rollback).model_version == 1
    assert SealedModel.open(BytesBlobReader(new), keys, rollback).model_version == 2
    refuse_open(old, keys, rollback)
    reopened = RollbackCounter(rollback.root, keys)  # the counter survives a reboot
    refuse_open(old, keys, reopened)


def test_a_blob_sealed_on_another_device_is_refused(blob, rollback, tmp_path) -> None:
    stranger = DeviceKeys.generate()
    refuse_open(blob, stranger, RollbackCounter(tmp_path / "stranger-rpmb", stranger))


def test_device_id_rewritten_to_this_device_is_refused(blob, keys, tmp_path) -> None:
    victim = DeviceKeys.generate()  # the blob was sealed for `keys`, not for the victim
    offset, size = HEADER_FIELDS["device_id"]
    tampered = bytearray(blob)
    tampered[offset : offset + size] = victim.device_id
    refuse_open(tampered, victim, RollbackCounter(tmp_path / "victim-rpmb", victim))


class RecordingReader(BytesBlobReader):
    def __init__(self, data: bytes | bytearray) -> None:
        super().__init__(bytes(data))
        self.requests: list[int] = []

    def read(self, offset_bytes: int, n_bytes: int) -> memoryview:
        self.requests.append(n_bytes)
        return super().read(offset_bytes, n_bytes)


def test_absurd_manifest_size_allocates_nothing_before_authentication(blob, keys,
                                                                      rollback) -> None:
    offset, size = HEADER_FIELDS["manifest_bytes"]
    tampered = bytearray(blob)
    tampered[offset : offset + size] = (2**62).to_bytes(8, "little")
    reader = RecordingReader(tampered)
    tracemalloc.start()
    try:
        with pytest.raises(SecurityError) as excinfo:
            SealedModel.open(reader, keys, rollback)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_refused(excinfo)
    assert max(reader.requests) == HEADER_BYTES
    assert peak_bytes < 64 * 1024


class FloodingReader(BytesBlobReader):
    """Answers every request with the same huge buffer (allocated before tracing)."""

    def __init__(self, flood: bytearray) -> None:
        super().__init__(flood)

    def read(self, offset_bytes: int, n_bytes: int) -> memoryview:
        return memoryview(self._data)


def test_an_oversized_answer_is_refused_without_copying(keys, rollback) -> None:
    reader = FloodingReader(bytearray(32 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(SecurityError) as excinfo:
            SealedModel.open(reader, keys, rollback)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_refused(excinfo)
    assert peak_bytes < 64 * 1024


@pytest.mark.parametrize("kind", ["gguf", "empty", "short", "random"])
def test_no_fallback_to_plaintext(model_path, keys, rollback, kind) -> None:
    data = {"gguf": model_path.read_bytes(), "empty": b"", "short": b"FXSEALED",
            "random": np.random.default_rng(5).bytes(64 * 1024)}[kind]
    refuse_open(data, keys, rollback)


class BounceBufferReader(BytesBlobReader):
    """A file service that reuses one shared buffer and scribbles over it on every request,
    as an attacker would after the secure side looked at the previous answer."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bounce = bytearray(len(data))

    def read(self, offset_bytes: int, n_bytes: int) -> memoryview:
        self.bounce[:] = b"\xff" * len(self.bounce)
        piece = self._data[offset_bytes : offset_bytes + n_bytes]
        self.bounce[: len(piece)] = piece
        return memoryview(self.bounce)[: len(piece)]


def test_bytes_are_copied_before_they_are_verified_and_used(blob, keys, rollback) -> None:
    reader = BounceBufferReader(blob)
    model = SealedModel.open(reader, keys, rollback)
    for unit in model.units:
        out = bytearray(unit.n_bytes)
        model.read_unit_into(reader, unit, out)
        ciphertext = reader.read(unit.chunks[0].file_offset_bytes,
                                 unit.chunks[0].ciphertext_bytes)
        model.decrypt_chunk_into(unit, 0, ciphertext, bytearray(unit.chunks[0].plaintext_bytes))


def test_a_failing_file_service_is_refused(blob, keys, rollback) -> None:
    class BrokenReader(BytesBlobReader):
        def read(self, offset_bytes: int, n_bytes: int) -> memoryview:
            if offset_bytes > HEADER_BYTES:
                raise OSError("flash read error")
            return super().read(offset_bytes, n_bytes)

    reader = BrokenReader(blob)
    model = SealedModel.open(reader, keys, rollback)
    out = bytearray([FILL]) * model.unit("embed").n_bytes
    with pytest.raises(SecurityError) as excinfo:
        model.read_unit_into(reader, "embed", out)
    assert_refused(excinfo)
    assert not any(out)


# -- decrypting straight into Flex-Mem frames ------------------------------------------------

def test_chunks_decrypt_into_flex_mem_and_tampering_scrubs_the_frames(
        blob, keys, rollback, port, victim_frames) -> None:
    owner = 7  # the victim TA of tests/conftest.py, which mapped ``victim_frames``
    frames = port.buffer(owner, victim_frames)
    reader = BytesBlobReader(blob)
    model = SealedModel.open(reader, keys, rollback)
    unit = model.unit("blk.0")
    plain = bytearray(unit.n_bytes)
    model.read_unit_into(reader, unit, plain)
    for index in (0, 1):
        chunk = unit.chunks[index]
        model.decrypt_chunk_into(unit, index, stored(blob, unit, index), frames,
                                 out_offset_bytes=index * CHUNK_BYTES)
        assert frames.read(index * CHUNK_BYTES, CHUNK_BYTES) == bytes(
            plain[chunk.unit_offset_bytes : chunk.unit_offset_bytes + CHUNK_BYTES])
    tampered = flipped(stored(blob, unit, 2), 0)
    with pytest.raises(SecurityError) as excinfo:
        model.decrypt_chunk_into(unit, 2, bytes(tampered), frames, out_offset_bytes=2 * CHUNK_BYTES)
    assert_refused(excinfo)
    assert frames.read(0, frames.size_bytes) == bytes(frames.size_bytes)
