"""The GGUF parser: every value type, tensor directory, and strict refusal of bad input."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf_bytes import ARRAY, BOOL, FLOAT32, INT32, STRING, UINT32, UINT64, TinyGGUF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.errors import (
    ModelFormatError,
    ModelNotFoundError,
    UnsupportedArchitectureError,
    UnsupportedQuantizationError,
)

MATRIX = np.arange(12, dtype=np.float32).reshape(3, 4)
VECTOR = np.linspace(-1, 1, 5, dtype=np.float32)


def tiny(arch: str = "llama") -> TinyGGUF:
    return (
        TinyGGUF()
        .kv("general.architecture", STRING, arch)
        .kv("general.name", STRING, "tiny ünïcode")
        .kv("u32", UINT32, 7)
        .kv("i32", INT32, -3)
        .kv("f32", FLOAT32, 1.5)
        .kv("flag", BOOL, 1)
        .kv("big", UINT64, 2**40)
        .kv("words", ARRAY, (STRING, ["a", "bé", ""]))
        .kv("ints", ARRAY, (INT32, [1, -2, 3]))
        .kv("nested", ARRAY, (ARRAY, [(UINT32, [1, 2]), (UINT32, [])]))
        .tensor("w", MATRIX)
        .tensor("v", VECTOR)
    )


def test_parses_every_value_type_and_the_tensor_directory() -> None:
    g = GGUFFile.from_bytes(tiny().build())
    assert g.version == 3
    assert g.architecture == "llama"
    assert g.metadata == {
        "general.architecture": "llama", "general.name": "tiny ünïcode", "u32": 7, "i32": -3,
        "f32": 1.5, "flag": True, "big": 2**40, "words": ["a", "bé", ""], "ints": [1, -2, 3],
        "nested": [[1, 2], []],
    }
    assert list(g.tensors) == ["w", "v"]
    w = g.tensors["w"]
    assert (w.shape, w.ggml_type, w.n_bytes) == ((3, 4), 0, 48)
    assert w.offset_bytes % 32 == 0
    assert np.array_equal(np.frombuffer(g.tensor_bytes("w"), np.float32).reshape(3, 4), MATRIX)
    assert np.array_equal(np.frombuffer(g.tensor_bytes("v"), np.float32), VECTOR)


def test_open_maps_the_same_content_as_from_bytes(tmp_path: Path) -> None:
    data = tiny().build()
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    with GGUFFile.open(path) as opened:
        in_memory = GGUFFile.from_bytes(data)
        assert opened.path == path and in_memory.path is None
        assert opened.metadata == in_memory.metadata
        assert opened.tensors == in_memory.tensors
        assert bytes(opened.tensor_bytes("w")) == bytes(in_memory.tensor_bytes("w"))


def test_closed_file_serves_no_bytes(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(tiny().build())
    with GGUFFile.open(path) as opened:
        view = opened.tensor_bytes("v")
        assert len(view) == 20
    with pytest.raises(ModelFormatError, match="closed"):
        opened.tensor_bytes("v")
    assert opened.metadata["u32"] == 7  # parsed metadata stays available


def test_honours_general_alignment() -> None:
    builder = tiny()
    builder.alignment = 64
    g = GGUFFile.from_bytes(builder.kv("general.alignment", UINT32, 64).build())
    assert g.alignment_bytes == 64
    assert all(t.offset_bytes % 64 == 0 for t in g.tensors.values())
    assert np.array_equal(np.frombuffer(g.tensor_bytes("v"), np.float32), VECTOR)


def test_real_model_metadata(smollm2_gguf: GGUFFile) -> None:
    assert smollm2_gguf.architecture == "llama"
    assert smollm2_gguf.metadata["llama.block_count"] == 30
    assert len(smollm2_gguf.metadata["tokenizer.ggml.tokens"]) == 49152
    assert smollm2_gguf.tensors["token_embd.weight"].shape == (49152, 576)


# ----- refusals ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        GGUFFile.open(tmp_path / "absent.gguf")


def test_bad_magic() -> None:
    builder = tiny()
    builder.magic = b"GGML"
    with pytest.raises(ModelFormatError, match="magic"):
        GGUFFile.from_bytes(builder.build())


def test_unsupported_version() -> None:
    builder = tiny()
    builder.version = 9
    with pytest.raises(ModelFormatError, match="version"):
        GGUFFile.from_bytes(builder.build())


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999])
def test_truncated_file(fraction: float, tmp_path: Path) -> None:
    data = tiny().build()
    last = GGUFFile.from_bytes(data).tensors["v"]
    content_end = last.offset_bytes + last.n_bytes  # what follows is only padding
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: int(content_end * fraction)])
    with pytest.raises(ModelFormatError):
        GGUFFile.open(path)
    with pytest.raises(ModelFormatError):
        GGUFFile.from_bytes(data[: int(content_end * fraction)])


def test_tensor_offset_beyond_the_file() -> None:
    with pytest.raises(ModelFormatError, match="beyond the end"):
        GGUFFile.from_bytes(tiny().build(offset_shift=4096))


def test_misaligned_tensor_offset() -> None:
    with pytest.raises(ModelFormatError, match="aligned"):
        GGUFFile.from_bytes(tiny().build(offset_shift=4))


def test_overlapping_tensors() -> None:
    data = bytearray(tiny().build())
    # Point tensor "v" at offset 0 (where "w" lives): its offset u64 follows its type u32.
    name_at = data.index(b"\x01\x00\x00\x00\x00\x00\x00\x00v")
    offset_at = name_at + 9 + 4 + 8 + 4
    struct.pack_into("<Q", data, offset_at, 0)
    with pytest.raises(ModelFormatError, match="overlap"):
        GGUFFile.from_bytes(bytes(data))


@pytest.mark.parametrize("field_offset", [8, 16])  # tensor count, metadata count
def test_absurd_header_counts(field_offset: int) -> None:
    data = bytearray(tiny().build())
    struct.pack_into("<Q", data, field_offset, 2**62)
    with pytest.raises(ModelFormatError, match="absurd"):
        GGUFFile.from_bytes(bytes(data))


def test_absurd_array_count_and_string_length() -> None:
    data = bytearray(TinyGGUF().kv("general.architecture", STRING, "llama")
                     .kv("xs", ARRAY, (UINT32, [1, 2, 3])).build())
    count_at = data.index(b"xs") + 2 + 4 + 4
    struct.pack_into("<Q", data, count_at, 2**61)
    with pytest.raises(ModelFormatError, match="absurd"):
        GGUFFile.from_bytes(bytes(data))
    data = bytearray(TinyGGUF().kv("general.architecture", STRING, "llama").build())
    struct.pack_into("<Q", data, 24, 2**60)  # length of the first key
    with pytest.raises(ModelFormatError, match="truncated"):
        GGUFFile.from_bytes(bytes(data))


def test_unknown_value_type() -> None:
    data = bytearray(TinyGGUF().kv("general.architecture", STRING, "llama")
                     .kv("n", UINT32, 1).build())
    type_at = data.index(b"n\x04\x00\x00\x00") + 1
    struct.pack_into("<I", data, type_at, 99)
    with pytest.raises(ModelFormatError, match="unknown value type 99"):
        GGUFFile.from_bytes(bytes(data))


def test_invalid_bool_and_duplicate_key() -> None:
    with pytest.raises(ModelFormatError, match="bool"):
        GGUFFile.from_bytes(TinyGGUF().kv("b", BOOL, 2).build())
    with pytest.raises(ModelFormatError, match="twice"):
        GGUFFile.from_bytes(TinyGGUF().kv("k", UINT32, 1).kv("k", UINT32, 2).build())


def test_unknown_quantization_type() -> None:
    builder = TinyGGUF().kv("general.architecture", STRING, "llama")
    builder.tensor("w", np.zeros(64, np.uint8), ggml_type=77)
    with pytest.raises(UnsupportedQuantizationError, match="77"):
        GGUFFile.from_bytes(builder.build())


def test_unknown_architecture() -> None:
    g = GGUFFile.from_bytes(tiny(arch="mamba9").build())
    with pytest.raises(UnsupportedArchitectureError, match="mamba9"):
        ModelConfig.from_gguf(g)


def test_missing_architecture() -> None:
    g = GGUFFile.from_bytes(TinyGGUF().kv("n", UINT32, 1).build())
    with pytest.raises(ModelFormatError, match="architecture"):
        _ = g.architecture


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_corruption_fails_cleanly(data: st.DataObject) -> None:
    """Any flipped header byte either still parses or raises a ModelError, nothing else."""
    image = bytearray(tiny().build())
    header_end = GGUFFile.from_bytes(bytes(image)).data_offset_bytes
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, header_end - 1))
        image[at] = data.draw(st.integers(0, 255))
    try:
        parsed = GGUFFile.from_bytes(bytes(image))
    except (ModelFormatError, UnsupportedQuantizationError):
        return
    for name in parsed.tensors:
        assert len(parsed.tensor_bytes(name)) == parsed.tensors[name].n_bytes
