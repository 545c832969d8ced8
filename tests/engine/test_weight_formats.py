"""The int4 weight format: exact 4-bit planes, torch's packed layout, and its numerics.

Planes must reproduce the reference block decoders bit for bit (they are exact rewrites).
Multiplication rounds inputs, scales and outputs to bfloat16, so products are compared with a
relative bound, and the real models with the float32 format. Measured int4 vs float32 on three
chat prompts: SmolLM2 mean |logit diff| 0.18-0.20 (llama.cpp: 0.19-0.22), argmax agreement
0.95-1.0; Gemma 3 0.07-0.08 (llama.cpp 0.16-0.20), 0.92-1.0. A wrong plane, scale or row order
moves logits by whole units and argmax agreement towards 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gguf import GGMLQuantizationType
from gguf import quants as gguf_quants

from flexserve.engine.ggml_types import ggml_type
from flexserve.engine.int4_layout import NATIVE_ROW_BLOCK, pack_digits, torch_row_block
from flexserve.engine.int4_matrix import KERNEL_MAX_TOKENS, Int4Matrix
from flexserve.engine.layers import group_bytes, layer_groups, load_group
from flexserve.engine.matrix import DenseMatrix, StackedMatrix, WeightFormat, make_matrix
from flexserve.engine.nibble_planes import PLANE_TYPES, NibblePlanes, cat_rows, to_planes
from flexserve.errors import ConfigError

_HALF_OFFSETS = {2: (0,), 3: (0, 2), 6: (0,), 7: (0, 2), 8: (0,), 12: (0, 2)}


def random_blocks(type_id: int, n_rows: int, n_cols: int, seed: int = 0) -> np.ndarray:
    """Random block bytes whose float16 scales are finite and small."""
    rng = np.random.default_rng(seed)
    info = ggml_type(type_id)
    n_blocks = n_rows * n_cols // info.block_elems
    blocks = rng.integers(0, 256, (n_blocks, info.block_bytes), dtype=np.uint8)
    for offset in _HALF_OFFSETS[type_id]:
        halves = rng.uniform(-0.05, 0.05, n_blocks).astype(np.float16)
        blocks[:, offset : offset + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return blocks


@pytest.mark.parametrize("type_id", sorted(PLANE_TYPES))
def test_planes_equal_the_reference_decoder_exactly(type_id: int) -> None:
    blocks = random_blocks(type_id, 64, 512)
    planes = to_planes(blocks.reshape(-1), type_id, (64, 512))
    expected = gguf_quants.dequantize(blocks.reshape(64, -1), GGMLQuantizationType(type_id))
    assert planes.digits.max() <= 15
    assert torch.equal(planes.dequantize(), torch.from_numpy(expected.astype(np.float32)))


def test_packing_matches_torch_and_rows_can_be_reordered() -> None:
    planes = to_planes(random_blocks(3, 128, 256).reshape(-1), 3, (128, 256))
    digits = planes.digits[0]
    converted = torch.ops.aten._convert_weight_to_int4pack_for_cpu(digits.int(), 1)
    row_block = torch_row_block()
    assert row_block in (32, 64)  # AVX2 / AVX-512 dispatch of torch 2.13 on x86-64
    assert torch.equal(pack_digits(digits, row_block), converted)
    order = torch.randperm(128)
    assert torch.equal(planes.select_rows(order).dequantize(), planes.dequantize()[order])
    both = cat_rows([planes, planes])
    assert torch.equal(both.dequantize()[128:], planes.dequantize())


def test_packing_in_chunks_equals_packing_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    digits = torch.randint(0, 16, (448, 64), dtype=torch.uint8)
    row_block = torch_row_block()
    whole = pack_digits(digits, row_block)
    monkeypatch.setattr("flexserve.engine.int4_layout.PACK_CHUNK_ROWS", 128)  # 3.5 chunks
    assert torch.equal(pack_digits(digits, row_block), whole)
    converted = torch.ops.aten._convert_weight_to_int4pack_for_cpu(digits.int(), 1)
    assert torch.equal(whole, converted)


@pytest.mark.parametrize("type_id", [3, 8])  # one plane (Q4_1) and two planes (Q8_0)
@pytest.mark.parametrize("n_tokens", [1, KERNEL_MAX_TOKENS + 1])  # torch: kernel, dequantize
@pytest.mark.parametrize("native", [True, False], ids=["native", "torch"])
@pytest.mark.parametrize("row_block", [None, 32, 64], ids=["chosen", "b32", "b64"])
def test_int4_matrix_products_and_rows(type_id: int, n_tokens: int, native: bool,
                                       row_block: int | None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layout gives the right products on every path: a layout torch's kernel does not
    read is never handed to it, and the native kernels only ever see the native layout."""
    if not native:
        monkeypatch.setattr("flexserve.engine.int4_matrix.native_q4_ops", lambda: None)
    planes = to_planes(random_blocks(type_id, 192, 256).reshape(-1), type_id, (192, 256))
    weight = planes.dequantize()
    matrix = Int4Matrix(planes, row_block)
    if row_block is None and not native:
        assert matrix.row_block == (torch_row_block() or NATIVE_ROW_BLOCK)
    x = torch.randn(n_tokens, 256)
    expected = x @ weight.T
    got = matrix(x).float()
    assert ((got - expected).norm() / expected.norm()).item() < 1e-2
    ids = torch.tensor([0, 31, 32, 63, 64, 191, 17, 16, 15, 48])
    rows = matrix.rows(ids)
    assert ((rows - weight[ids]).abs().max() / weight.abs().max()).item() < 1e-2
    assert torch.equal(rows, matrix.torch_rows(ids))  # the C lookup computes torch's values


@pytest.mark.parametrize("native", [True, False], ids=["native", "torch"])
@pytest.mark.parametrize("n_tokens", [1, 5, 50])
def test_a_non_finite_input_never_gives_finite_outputs(native: bool, n_tokens: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN or inf in one group of the input reaches every output row of its token (the int16
    inputs of the AVX2 kernel must not round it away)."""
    if not native:
        monkeypatch.setattr("flexserve.engine.int4_matrix.native_q4_ops", lambda: None)
    planes = to_planes(random_blocks(3, 64, 128).reshape(-1), 3, (64, 128))
    matrix = Int4Matrix(planes)
    for bad in (float("nan"), float("inf")):
        x = torch.randn(n_tokens, 128)
        x[-1, 40] = bad
        out = matrix(x, torch.float32)
        assert not torch.isfinite(out[-1]).any()
        assert torch.isfinite(out[:-1]).all()


def test_cpu_flags_come_from_the_first_processor() -> None:
    from flexserve.engine.cpu_features import cpu_flags

    text = "processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n"
    assert cpu_flags(text) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert cpu_flags("model name: x\n") == frozenset()


def test_make_matrix_fuses_like_parts_and_stacks_unlike_ones() -> None:
    q4 = to_planes(random_blocks(3, 64, 64).reshape(-1), 3, (64, 64))
    q8 = to_planes(random_blocks(8, 64, 64, seed=1).reshape(-1), 8, (64, 64))
    assert isinstance(make_matrix([q4, q4], WeightFormat.INT4), Int4Matrix)
    stacked = make_matrix([q4, q8], WeightFormat.INT4)
    assert isinstance(stacked, StackedMatrix) and stacked.out_features == 128
    odd = NibblePlanes(q4.digits[:, :40], q4.scales[:, :40], q4.offsets[:40])  # 40 rows: no
    dense = make_matrix([odd], WeightFormat.INT4)
    assert isinstance(dense, DenseMatrix)
    assert torch.equal(dense.weight.float(), odd.dequantize().to(torch.bfloat16).float())
    assert dense.weight.dtype == torch.bfloat16 or dense.bf16_values
    x = torch.randn(3, 64)
    expected = F.linear(x.to(torch.bfloat16).float(), dense.weight.float())
    assert torch.allclose(dense(x).float(), expected, rtol=1e-2, atol=1e-3)
    exact = make_matrix([q4], WeightFormat.FLOAT32)
    assert isinstance(exact, DenseMatrix) and torch.equal(exact.weight, q4.dequantize())
    with pytest.raises(ConfigError, match="weight format"):
        WeightFormat.parse("int3")


def test_int4_groups_come_from_the_buffer_only(smollm2_gguf) -> None:
    group = layer_groups(smollm2_gguf)[1]
    blob = bytearray(group_bytes(smollm2_gguf, group))
    weights = load_group(group, blob, "int4")
    exact = load_group(group, bytes(blob))
    q = weights["blk.0.attn_q.weight"]
    assert isinstance(q, NibblePlanes)
    blob[:] = bytes(len(blob))  # the planes own their memory
    assert torch.equal(q.dequantize(), exact["blk.0.attn_q.weight"])
    assert torch.equal(weights["blk.0.attn_norm.weight"], exact["blk.0.attn_norm.weight"])


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_int4_logits_stay_close_to_float32(model: str, request: pytest.FixtureRequest) -> None:
    from flexserve.engine.loader import load_model

    path: Path = request.getfixturevalue(f"{model}_path")
    exact, fast = load_model(path, weight_format="float32"), load_model(path)
    assert fast.transformer.weight_format is WeightFormat.INT4
    ids = exact.tokenizer.encode("The history of the Roman Empire began with a small city")
    want = exact.transformer.forward(ids, exact.transformer.new_cache(len(ids)))
    got = fast.transformer.forward(ids, fast.transformer.new_cache(len(ids)))
    assert (got - want).abs().mean().item() < 0.4
    assert (got.argmax(-1) == want.argmax(-1)).float().mean().item() >= 0.9
