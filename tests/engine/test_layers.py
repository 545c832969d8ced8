"""Layer groups: layout, parameter counts, and weights built only from the caller's buffer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny_models
import torch

from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layers import (
    GROUP_ALIGNMENT_BYTES,
    group_bytes,
    layer_groups,
    load_group,
)
from flexserve.errors import ModelFormatError


def test_smollm2_groups(smollm2_gguf: GGUFFile) -> None:
    groups = layer_groups(smollm2_gguf)
    assert [g.name for g in groups] == ["embed"] + [f"blk.{i}" for i in range(30)] + ["output"]
    assert [g.index for g in groups] == list(range(32))
    assert groups[0].tensor_names() == ("token_embd.weight",)
    assert groups[-1].tensor_names() == ("output_norm.weight",)  # tied: no output.weight
    assert len(groups[1].tensors) == 9
    total_params = sum(t.n_elements for t in smollm2_gguf.tensors.values())
    assert sum(g.n_params for g in groups) == total_params
    assert 130e6 < total_params < 140e6  # SmolLM2-135M
    for group in groups:
        assert all(off % GROUP_ALIGNMENT_BYTES == 0 for off in group.rel_offsets)
        last, end = group.tensors[-1], group.rel_offsets[-1]
        assert group.n_bytes == end + last.n_bytes


def test_gemma3_groups_put_output_norm_last(gemma3_gguf: GGUFFile) -> None:
    groups = layer_groups(gemma3_gguf)
    assert groups[0].name == "embed" and groups[-1].name == "output"
    assert len(groups) == 20
    assert groups[-1].tensor_names() == ("output_norm.weight",)
    assert len(groups[1].tensors) == 13  # QK norms and the two extra Gemma norms


def test_group_blob_holds_each_tensor_at_its_offset(smollm2_gguf: GGUFFile) -> None:
    group = layer_groups(smollm2_gguf)[3]
    blob = group_bytes(smollm2_gguf, group)
    assert len(blob) == group.n_bytes
    for info, rel in zip(group.tensors, group.rel_offsets, strict=True):
        assert blob[rel : rel + info.n_bytes] == bytes(smollm2_gguf.tensor_bytes(info.name))


def test_buffer_weights_equal_file_weights_and_tampering_changes_them(
    smollm2_gguf: GGUFFile,
) -> None:
    group = layer_groups(smollm2_gguf)[1]
    blob = bytearray(group_bytes(smollm2_gguf, group))
    from_buffer = load_group(group, memoryview(blob))
    from flexserve.engine.quant import dequantize

    for info in group.tensors:
        from_file = dequantize(smollm2_gguf.tensor_bytes(info.name), info.ggml_type, info.shape)
        assert torch.equal(from_buffer[info.name], torch.from_numpy(from_file))
    q_index = group.tensor_names().index("blk.0.attn_q.weight")
    blob[group.rel_offsets[q_index] + 100] ^= 0xFF
    tampered = load_group(group, bytes(blob))
    assert not torch.equal(tampered["blk.0.attn_q.weight"], from_buffer["blk.0.attn_q.weight"])
    for name in group.tensor_names():
        if name != "blk.0.attn_q.weight":
            assert torch.equal(tampered[name], from_buffer[name])


def test_load_group_never_reads_the_file(tmp_path: Path) -> None:
    """After the blob is taken, destroying the file changes nothing: only the buffer is used."""
    hf = tiny_models.hf_model("qwen3")
    path = tiny_models.write_gguf("qwen3", hf, tmp_path / "m.gguf")
    gguf_file = GGUFFile.open(path)
    groups = layer_groups(gguf_file)
    blobs = [bytearray(group_bytes(gguf_file, g)) for g in groups]
    expected = [load_group(g, bytes(b)) for g, b in zip(groups, blobs, strict=True)]
    with path.open("r+b") as handle:  # zero the file in place (the map sees it)
        handle.write(bytes(path.stat().st_size))
    assert not any(gguf_file.tensor_bytes(groups[1].tensors[0].name))
    for group, blob, want in zip(groups, blobs, expected, strict=True):
        got = load_group(group, blob)
        assert all(torch.equal(got[n], want[n]) for n in want)
        blob[:] = bytes(len(blob))  # the weights own their memory: zeroing the blob is fine
        assert all(torch.equal(got[n], want[n]) for n in want)


def test_short_buffer_is_refused(smollm2_gguf: GGUFFile) -> None:
    group = layer_groups(smollm2_gguf)[-1]
    with pytest.raises(ModelFormatError, match="needs"):
        load_group(group, b"\0" * (group.n_bytes - 1))
    weights = load_group(group, np.frombuffer(group_bytes(smollm2_gguf, group), np.uint8))
    assert weights["output_norm.weight"].shape == (576,)
