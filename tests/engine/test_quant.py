"""Dequantization of every format the bundled models use, checked independently.

Block formats that ``gguf`` can quantize are round-tripped with an error bound derived from
the format's step size; the K-quants (no quantizer in ``gguf``) are checked against small
scalar decoders written here from the ggml block layouts, on random blocks.
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf import quants as gguf_quants
from gguf.constants import GGML_QUANT_SIZES

from flexserve.engine import ggml_types
from flexserve.engine.quant import SUPPORTED_TYPES, dequantize
from flexserve.errors import ModelFormatError, UnsupportedQuantizationError

RNG = np.random.default_rng(1234)


def test_block_geometry_matches_the_gguf_package() -> None:
    for type_id, info in ggml_types.GGML_TYPES.items():
        block = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
        assert (info.block_elems, info.block_bytes) == block, info.name


def test_plain_float_types_are_exact() -> None:
    x = RNG.standard_normal((3, 8)).astype(np.float32)
    assert np.array_equal(dequantize(x.tobytes(), ggml_types.F32, x.shape), x)
    half = x.astype(np.float16)
    assert np.array_equal(dequantize(half.tobytes(), ggml_types.F16, x.shape),
                          half.astype(np.float32))
    bf16_bits = (x.view(np.uint32) >> 16).astype(np.uint16)  # truncation: exact in bf16
    expected = (bf16_bits.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(dequantize(bf16_bits.tobytes(), ggml_types.BF16, x.shape), expected)


def test_known_q8_0_and_q4_0_blocks() -> None:
    q8 = np.float16(0.5).tobytes() + np.arange(-16, 16, dtype=np.int8).tobytes()
    assert np.array_equal(dequantize(q8, ggml_types.Q8_0, (32,)), np.arange(-16, 16) * 0.5)
    nibbles = np.arange(16, dtype=np.uint8)
    q4 = np.float16(2.0).tobytes() + (nibbles | (nibbles[::-1] << 4)).tobytes()
    expected = np.concatenate([nibbles, nibbles[::-1]]).astype(np.float32) - 8
    assert np.array_equal(dequantize(q4, ggml_types.Q4_0, (32,)), expected * 2.0)


def test_known_q4_1_block() -> None:
    nibbles = np.full(16, 0x31, dtype=np.uint8)  # low nibble 1, high nibble 3
    block = np.float16(0.25).tobytes() + np.float16(-1.0).tobytes() + nibbles.tobytes()
    expected = np.array([1] * 16 + [3] * 16) * 0.25 - 1.0
    assert np.array_equal(dequantize(block, ggml_types.Q4_1, (32,)), expected)


# Worst-case absolute error of one value, as a multiple of the block's absolute maximum
# (Q8_0: step amax/127, Q4_0: amax/8, Q4_1 / Q5_0 / Q5_1: range/15, amax/16, range/31; half a
# step of rounding, plus slack for the f16 scale).
ROUND_TRIP_BOUNDS = {
    ggml_types.Q8_0: 0.6 / 127, ggml_types.Q4_0: 1.1 / 8, ggml_types.Q4_1: 1.1 / 15,
    ggml_types.Q5_0: 1.1 / 16, ggml_types.Q5_1: 1.1 / 31, ggml_types.BF16: 2**-8,
}


@pytest.mark.parametrize("type_id", sorted(ROUND_TRIP_BOUNDS))
def test_round_trip_within_the_format_step(type_id: int) -> None:
    x = RNG.standard_normal((6, 128)).astype(np.float32)
    packed = gguf_quants.quantize(x, GGMLQuantizationType(type_id))
    y = dequantize(packed.tobytes(), type_id, x.shape)
    assert y.shape == x.shape and y.dtype == np.float32
    blocks_x, blocks_err = x.reshape(-1, 32), np.abs(y - x).reshape(-1, 32)
    span = 2 * np.abs(blocks_x).max(axis=1) if type_id in (3, 7) else np.abs(blocks_x).max(axis=1)
    assert (blocks_err.max(axis=1) <= ROUND_TRIP_BOUNDS[type_id] * span + 1e-6).all()
    assert np.abs(y - x).max() > 0 or type_id == ggml_types.BF16


# ----- K-quants against scalar decoders of the ggml block layouts -------------------------------


def _f16(raw: bytes) -> float:
    return float(np.frombuffer(raw, np.float16)[0])


def _scale_min_k4(j: int, q: bytes) -> tuple[int, int]:
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def ref_q4_k(block: bytes) -> list[float]:
    d, dmin, scales, qs = _f16(block[0:2]), _f16(block[2:4]), block[4:16], block[16:144]
    out = []
    for chunk in range(4):
        q = qs[32 * chunk : 32 * chunk + 32]
        for half, shift in ((0, 0), (1, 4)):
            sc, m = _scale_min_k4(2 * chunk + half, scales)
            out += [d * sc * ((v >> shift) & 0xF) - dmin * m for v in q]
    return out


def ref_q5_k(block: bytes) -> list[float]:
    d, dmin, scales = _f16(block[0:2]), _f16(block[2:4]), block[4:16]
    qh, qs = block[16:48], block[48:176]
    out = []
    for chunk in range(4):
        q = qs[32 * chunk : 32 * chunk + 32]
        for half, shift in ((0, 0), (1, 4)):
            sc, m = _scale_min_k4(2 * chunk + half, scales)
            bit = 1 << (2 * chunk + half)
            out += [d * sc * (((v >> shift) & 0xF) + (16 if h & bit else 0)) - dmin * m
                    for v, h in zip(q, qh, strict=True)]
    return out


def ref_q6_k(block: bytes) -> list[float]:
    ql, qh = block[0:128], block[128:192]
    scales = np.frombuffer(block[192:208], np.int8)
    d = _f16(block[208:210])
    out = [0.0] * 256
    for half in range(2):
        lo, hi, sc = ql[64 * half :], qh[32 * half :], scales[8 * half :]
        for l_idx in range(32):
            s = l_idx // 16
            q1 = ((lo[l_idx] & 0xF) | ((hi[l_idx] >> 0) & 3) << 4) - 32
            q2 = ((lo[l_idx + 32] & 0xF) | ((hi[l_idx] >> 2) & 3) << 4) - 32
            q3 = ((lo[l_idx] >> 4) | ((hi[l_idx] >> 4) & 3) << 4) - 32
            q4 = ((lo[l_idx + 32] >> 4) | ((hi[l_idx] >> 6) & 3) << 4) - 32
            base = 128 * half + l_idx
            out[base] = d * sc[s] * q1
            out[base + 32] = d * sc[s + 2] * q2
            out[base + 64] = d * sc[s + 4] * q3
            out[base + 96] = d * sc[s + 6] * q4
    return out


def random_blocks(n_blocks: int, block_bytes: int, scale_at: tuple[int, ...]) -> bytes:
    """Random blocks whose f16 scale fields hold small finite values."""
    raw = bytearray(RNG.integers(0, 256, n_blocks * block_bytes, dtype=np.uint8).tobytes())
    for b in range(n_blocks):
        for at in scale_at:
            value = np.float16(RNG.uniform(-0.05, 0.05))
            raw[b * block_bytes + at : b * block_bytes + at + 2] = value.tobytes()
    return bytes(raw)


@pytest.mark.parametrize(
    ("type_id", "block_bytes", "scale_at", "reference"),
    [
        (ggml_types.Q4_K, 144, (0, 2), ref_q4_k),
        (ggml_types.Q5_K, 176, (0, 2), ref_q5_k),
        (ggml_types.Q6_K, 210, (208,), ref_q6_k),
    ],
)
def test_k_quants_match_scalar_decoders(type_id, block_bytes, scale_at, reference) -> None:
    n_blocks = 3
    raw = random_blocks(n_blocks, block_bytes, scale_at)
    got = dequantize(raw, type_id, (n_blocks * 256,))
    expected = np.concatenate([
        np.array(reference(raw[b * block_bytes : (b + 1) * block_bytes]), dtype=np.float32)
        for b in range(n_blocks)
    ])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert np.abs(expected).max() > 0


def test_result_does_not_alias_the_input() -> None:
    x = np.ones(8, np.float32)
    buf = bytearray(x.tobytes())
    y = dequantize(memoryview(buf), ggml_types.F32, (8,))
    buf[:4] = np.float32(5).tobytes()
    assert y[0] == 1.0


def test_wrong_byte_count_and_unknown_type() -> None:
    with pytest.raises(ModelFormatError, match="needs 34 bytes"):
        dequantize(b"\0" * 33, ggml_types.Q8_0, (32,))
    with pytest.raises(UnsupportedQuantizationError, match="77"):
        dequantize(b"\0" * 4, 77, (1,))
    assert {0, 1, 2, 3, 6, 8, 12, 13, 14, 30} <= SUPPORTED_TYPES
