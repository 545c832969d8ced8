"""The fused C decode step against the torch step it replaces (same int4 format numerics).

Both paths round the same values to bfloat16 at the same points and compute the rest in float32,
so their logits agree to float32 rounding (a rare bfloat16 rounding flip moves a few logits by
about 1e-3 on these tiny models). A wrong RoPE pair, KV slot, head grouping, window or norm
moves logits by whole units.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import tiny_models
import torch

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.int4_layout import torch_row_block
from flexserve.engine.int4_matrix import Int4Matrix
from flexserve.engine.layers import layer_groups
from flexserve.engine.loader import build_transformer
from flexserve.engine.model import Transformer
from flexserve.engine.native import build
from flexserve.engine.native.build import load_decode_ops
from flexserve.engine.native_matvec import MatVecRunner, NativeMatVec, plan
from flexserve.engine.nibble_planes import to_planes

# Only a missing compiler skips: a source that fails to build must fail these tests.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")),
                                 reason="no C compiler")]
PROMPT = [3, 14, 15, 92, 65, 35, 89]
STEPS = [79, 32, 38, 46, 26, 5, 8, 1]  # past the Gemma window of 5


def _models(arch: str, tmp_path: Path,
            quantize: dict[str, int] | None = None) -> tuple[Transformer, Transformer]:
    """The same tiny GGUF in the ``int4`` and the exact ``float32`` format."""
    hf = tiny_models.hf_model(arch)
    gguf = GGUFFile.open(tiny_models.write_gguf(arch, hf, tmp_path / f"{arch}.gguf", quantize))
    config, groups = ModelConfig.from_gguf(gguf), layer_groups(gguf)
    return tuple(build_transformer(gguf, config, groups, weight_format=f)  # type: ignore
                 for f in ("int4", "float32"))


def _decode_logits(model: Transformer, native: bool) -> torch.Tensor:
    model.native_fused = native
    cache = model.new_cache(32)
    model.forward(PROMPT, cache)
    logits = torch.stack([model.forward([t], cache)[-1] for t in STEPS])
    assert cache.length == len(PROMPT) + len(STEPS)
    return logits


_QUANTIZED = {f"blk.{i}.{name}.weight": 3 for i in range(3)  # Q4_1: int4 planes
              for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                           "ffn_down")} | {"blk.0.attn_output.weight": 8}  # Q8_0: two planes


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma3"])
@pytest.mark.parametrize("quantize", [None, _QUANTIZED], ids=["dense", "int4"])
def test_fused_step_equals_the_torch_step(arch: str, quantize: dict | None,
                                          tmp_path: Path) -> None:
    """Dense bfloat16 matrices: the same roundings, so equal up to rare bfloat16 flips. Int4
    planes: the native matvec sums in another order (and planes in float32), so the fused
    step's error against the exact float32 format must be the torch step's, not more."""
    model, exact = _models(arch, tmp_path, quantize)
    if quantize:
        assert isinstance(model.blocks[0].wo, Int4Matrix)
    reference = _decode_logits(model, native=False)
    fused = _decode_logits(model, native=True)
    assert model._fused is not None
    want = _decode_logits(exact, native=True)
    assert exact._fused is None  # the exact format always runs the torch step
    assert_fused_matches_torch(fused, reference, want, quantized=quantize is not None)


def assert_fused_matches_torch(fused: torch.Tensor, reference: torch.Tensor, want: torch.Tensor,
                               quantized: bool) -> None:
    """The fused logits' error against the exact ``want`` is the torch path's, not more; they
    stay close to the torch path's (within its error for int4 planes, whose native sums run in
    another order) and pick the same tokens."""
    torch_error = (reference - want).abs().mean().item()
    fused_error = (fused - want).abs().mean().item()
    assert fused_error < 1.25 * torch_error + 1e-4
    assert (fused - reference).abs().mean().item() < (1.0 if quantized else 0.1) * torch_error
    assert torch.equal(fused.argmax(-1), reference.argmax(-1))


@pytest.mark.parametrize("type_id", [3, 8])  # one plane (Q4_1) and two planes (Q8_0)
def test_native_matvec_matches_the_int4_kernel(type_id: int) -> None:
    from test_weight_formats import random_blocks

    ops = load_decode_ops()
    planes = to_planes(random_blocks(type_id, 320, 256).reshape(-1), type_id, (320, 256))
    matrix = Int4Matrix(planes)
    matvec = plan(matrix, ops)
    if not isinstance(matvec, NativeMatVec):
        pytest.skip("this CPU has neither AVX512-BF16/VBMI nor AVX2/FMA: torch's kernel is used")
    x = torch.randn(1, 256).to(torch.bfloat16)
    run = MatVecRunner(ops, 320, 256)
    out_bf16, out_f32 = torch.empty(1, 320, dtype=torch.bfloat16), torch.empty(1, 320)
    run(matvec, x, out_bf16)
    run(matvec, x, out_f32)
    kernel = matrix(x).float()
    exact = x.float() @ planes.dequantize().T
    assert (out_bf16.float() == out_f32.to(torch.bfloat16).float()).all()
    assert ((out_f32 - kernel).norm() / kernel.norm()).item() < 1e-2
    ours_error = ((out_f32 - exact).norm() / exact.norm()).item()
    kernel_error = ((kernel - exact).norm() / exact.norm()).item()
    assert ours_error < 1e-2 and ours_error <= 1.05 * kernel_error  # bfloat16 scales only
    if type_id == 3:  # one plane: the same single rounding as the kernel, bar summation order
        assert (out_bf16 == kernel.to(torch.bfloat16)).float().mean().item() > 0.9


def test_disabled_or_missing_native_ops_fall_back_to_torch(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _models("llama", tmp_path)
    reference = _decode_logits(model, native=False)
    assert model._fused is None  # the torch step ran
    monkeypatch.setattr("flexserve.engine.model.load_decode_ops", lambda: None)
    assert torch.equal(_decode_logits(model, native=True), reference)
    assert model._fused is None and model.native_fused is False


def test_the_native_kernels_build_here() -> None:
    assert load_decode_ops() is not None


def test_the_library_is_built_into_the_cache_and_reused(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = build.library_path(tmp_path)
    assert target.parent == tmp_path / "native" and not target.exists()
    build.compile_library(target, "cc")
    assert target.exists() and list(target.parent.iterdir()) == [target]  # no temporary left
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    assert build.library_path() == target
    build.load_decode_ops.cache_clear()
    try:
        assert build.load_decode_ops() is not None
        monkeypatch.setenv(build.DISABLE_ENV, "0")
        build.load_decode_ops.cache_clear()
        assert build.load_decode_ops() is None
    finally:
        build.load_decode_ops.cache_clear()


@pytest.mark.slow
def test_fused_decode_of_smollm2_stays_close_to_float32(smollm2_path: Path) -> None:
    """Teacher-forced decode steps (fused, int4) against the exact float32 forward pass."""
    from flexserve.engine.loader import load_model

    exact, fast = load_model(smollm2_path, weight_format="float32"), load_model(smollm2_path)
    ids = exact.tokenizer.encode("The history of the Roman Empire began with a small city on")
    want = exact.transformer.forward(ids, exact.transformer.new_cache(len(ids)))[8:]
    cache = fast.transformer.new_cache(len(ids))
    fast.transformer.forward(ids[:8], cache)
    got = torch.stack([fast.transformer.forward([t], cache)[-1] for t in ids[8:]])
    assert fast.transformer._fused is not None
    assert (got - want).abs().mean().item() < 0.4
    assert (got.argmax(-1) == want.argmax(-1)).float().mean().item() >= 0.9


@pytest.mark.parametrize("type_id", [3, 8])
@pytest.mark.parametrize(("n_tokens", "n_cols"), [(1, 320), (2, 320), (5, 320), (8, 320),
                                                  (33, 320), (53, 320), (50, 576)])
def test_native_gemm_matches_the_int4_kernel_row_by_row(type_id: int, n_tokens: int,
                                                        n_cols: int) -> None:
    """Whole and partial token tiles of every path: AVX-512 tiles of 4; AVX2 tiles of 2, and
    from 48 tokens 16-row strips with tiles of 6 (53 = 8 * 6 + 5) and column chunks of 512
    (576 columns: two chunks)."""
    from test_weight_formats import random_blocks

    from flexserve.engine.native_gemm import native_q4_ops, q4_matmul

    ops = native_q4_ops()
    if ops is None:
        pytest.skip("this CPU has neither AVX512-BF16/VBMI nor AVX2/FMA: torch's kernel is used")
    planes = to_planes(random_blocks(type_id, 192, n_cols).reshape(-1), type_id, (192, n_cols))
    matrix = Int4Matrix(planes)
    x = torch.randn(n_tokens, n_cols).to(torch.bfloat16)
    got = q4_matmul(ops, matrix.packed, matrix.scales_zeros, x, 192).float()
    rows = torch.cat([q4_matmul(ops, matrix.packed, matrix.scales_zeros, x[i:i + 1], 192)
                      for i in range(n_tokens)]).float()
    exact = x.float() @ planes.dequantize().T
    torch_layout = Int4Matrix(planes, torch_row_block())
    kernel = torch.cat([_int4_kernel(torch_layout, x[i:i + 1]) for i in range(n_tokens)])
    assert torch.equal(got, rows)  # the same sums as the single-row kernel, row by row
    ours_error = ((got - exact).norm() / exact.norm()).item()
    kernel_error = ((kernel - exact).norm() / exact.norm()).item()
    assert ours_error < 1e-2 and ours_error <= 1.05 * kernel_error
    swapped = x.flip(0)  # each output row depends on its own input row only
    assert torch.equal(q4_matmul(ops, matrix.packed, matrix.scales_zeros, swapped, 192).flip(0),
                       q4_matmul(ops, matrix.packed, matrix.scales_zeros, x, 192))


def _int4_kernel(matrix: Int4Matrix, x: torch.Tensor) -> torch.Tensor:
    """torch's own int4 kernel on the same planes (the reference the native kernels replace)."""
    out = torch.ops.aten._weight_int4pack_mm_for_cpu(x, matrix.packed[0], 32,
                                                     matrix.scales_zeros[0]).float()
    for packed, scales_zeros in zip(matrix.packed[1:], matrix.scales_zeros[1:], strict=True):
        out += torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, 32, scales_zeros).float()
    return out


@pytest.mark.parametrize("type_id", [6, 7, 8])  # Q5_0, Q5_1, Q8_0: second plane scaled by 16
@pytest.mark.parametrize("n_tokens", [1, 5, 50])
def test_two_planes_in_one_pass_equal_two_passes(type_id: int, n_tokens: int) -> None:
    from test_weight_formats import random_blocks

    from flexserve.engine.native_gemm import native_q4_ops, q4_matmul

    ops = native_q4_ops()
    if ops is None or not ops.fs_q4x2_available():
        pytest.skip("the one-pass two-plane kernel is the AVX2 kernels' (AVX-512: two passes)")
    planes = to_planes(random_blocks(type_id, 128, 256).reshape(-1), type_id, (128, 256))
    matrix = Int4Matrix(planes)
    assert matrix.one_pass
    x = torch.randn(n_tokens, 256).to(torch.bfloat16)
    one_pass = q4_matmul(ops, matrix.packed, matrix.scales_zeros, x, 128, torch.float32, True)
    two_passes = q4_matmul(ops, matrix.packed, matrix.scales_zeros, x, 128, torch.float32)
    exact = x.float() @ planes.dequantize().T
    assert ((one_pass - exact).norm() / exact.norm()).item() < 1e-2
    assert ((one_pass - two_passes).norm() / exact.norm()).item() < 1e-4
    run = MatVecRunner(ops, 128, 256)
    matvec = plan(matrix, ops)
    assert isinstance(matvec, NativeMatVec) and matvec.one_pass
    out = torch.empty(1, 128)
    run(matvec, x[:1], out)
    assert torch.equal(out, one_pass[:1])


def test_two_planes_with_unrelated_scales_take_two_passes() -> None:
    from test_weight_formats import random_blocks

    from flexserve.engine.native_gemm import native_q4_ops

    planes = to_planes(random_blocks(8, 64, 128).reshape(-1), 8, (64, 128))
    planes.scales[1] *= 1.5
    matrix = Int4Matrix(planes)
    assert not matrix.one_pass
    x = torch.randn(3, 128)
    exact = x.to(torch.bfloat16).float() @ planes.dequantize().T
    got = matrix(x, torch.float32)
    assert ((got - exact).norm() / exact.norm()).item() < 1e-2
    ops = native_q4_ops()
    if ops is not None:
        matvec = plan(matrix, ops)
        assert not (isinstance(matvec, NativeMatVec) and matvec.one_pass)
