"""LLM compute time per layer, from model shapes (``catalog.shapes``) and a device profile.

Prefill is compute-bound: ``ops = 2 x matmul params x tokens + attention ops`` (a
multiply-accumulate is 2 ops), priced at ``cpu.big_core_gemm_int8_ops_per_s`` per big core or
at ``npu.peak_int8_ops_per_s x npu.prefill_efficiency`` plus ``npu.job_launch_s`` per job.
Decode is memory-bound: the bytes one token reads (the layer's Q8_0 weights plus its KV cache)
over ``cpu.decode_bytes_per_s`` (all big cores together) or ``npu.decode_bytes_per_s``.

Layers are the loadable units of :func:`flexserve.catalog.shapes.layer_sizes`: ``embed`` (a row
gather: no matmul), ``blk.<i>`` and ``output`` (final norm and the LM head; a model with tied
embeddings computes its head with the embedding matrix, which is charged here even though the
``output`` unit holds only the norm).
"""

from __future__ import annotations

import enum

from flexserve.catalog.shapes import (
    F32_BYTES,
    Q8_0_BLOCK_BYTES,
    Q8_0_BLOCK_WEIGHTS,
    LayerSize,
    layer_sizes,
)
from flexserve.engine.config import ModelConfig
from flexserve.errors import ConfigError
from flexserve.timing.profile import DeviceProfile

#: KV-cache element size: llama.cpp's default fp16 K and V (``ModelConfig.kv_bytes_per_token``).
KV_BYTES_PER_VALUE = 2


class ComputeUnit(enum.StrEnum):
    CPU = "cpu"
    NPU = "npu"


class LayerKind(enum.StrEnum):
    EMBED = "embed"
    BLOCK = "block"
    OUTPUT = "output"


def layer_kind(layer: LayerSize) -> LayerKind:
    """The role of a :func:`layer_sizes` unit, from its name."""
    if layer.name == "embed":
        return LayerKind.EMBED
    if layer.name == "output":
        return LayerKind.OUTPUT
    if layer.name.startswith("blk."):
        return LayerKind.BLOCK
    raise ConfigError(f"unknown layer {layer.name!r}")


def q8_0_matrix_bytes(params: int) -> int:
    """Bytes of ``params`` weights in Q8_0 (34 bytes per block of 32)."""
    return -(-params // Q8_0_BLOCK_WEIGHTS) * Q8_0_BLOCK_BYTES


def head_params(shape: ModelConfig) -> int:
    """Parameters of the LM head (the embedding matrix when embeddings are tied)."""
    return shape.vocab_size * shape.d_model


def _check_tokens(tokens: int, context_tokens: int) -> None:
    if tokens < 0 or context_tokens < 0:
        raise ConfigError("token counts must be >= 0")


# --- prefill --------------------------------------------------------------------------------

def prefill_matmul_ops(shape: ModelConfig, layer: LayerSize, tokens: int,
                       logits_tokens: int = 1) -> int:
    """``2 x params x tokens`` for a block; the head only for ``logits_tokens`` positions
    (llama.cpp computes logits of the last prompt token only); the embedding is a gather."""
    _check_tokens(tokens, logits_tokens)
    kind = layer_kind(layer)
    if kind is LayerKind.BLOCK:
        return 2 * layer.matrix_params * tokens
    if kind is LayerKind.OUTPUT:
        return 2 * head_params(shape) * min(logits_tokens, tokens)
    return 0


def prefill_attention_ops(shape: ModelConfig, layer: LayerSize, tokens: int,
                          context_tokens: int = 0) -> int:
    """Causal attention of ``tokens`` new tokens after ``context_tokens`` cached ones.

    Token ``t`` (0-based) attends to ``context_tokens + t + 1`` positions; QK^T and AV each cost
    ``2 x q_dim`` ops per (query, key) pair: ``4 x q_dim x (T x C + T(T+1)/2)``.
    Softmax, norms, RoPE and activations are elementwise and not counted.
    """
    _check_tokens(tokens, context_tokens)
    if layer_kind(layer) is not LayerKind.BLOCK:
        return 0
    pairs = tokens * context_tokens + tokens * (tokens + 1) // 2
    return 4 * shape.q_dim * pairs


def prefill_ops(shape: ModelConfig, layer: LayerSize, tokens: int, context_tokens: int = 0) -> int:
    """All counted prefill ops of one layer (matmuls + attention)."""
    return (prefill_matmul_ops(shape, layer, tokens)
            + prefill_attention_ops(shape, layer, tokens, context_tokens))


def cpu_ops_s(ops: int, profile: DeviceProfile, cores: int | None = None) -> float:
    """``ops / (cores x cpu.big_core_gemm_int8_ops_per_s)``; ``cores`` defaults to
    ``cpu.big_cores`` (the TA runs on all big cores)."""
    n = profile.cpu.big_cores if cores is None else cores
    if not 1 <= n <= profile.cpu.big_cores:
        raise ConfigError(f"cores must be in 1..{profile.cpu.big_cores}, got {n}")
    return ops / (n * profile.cpu.big_core_gemm_int8_ops_per_s)


def npu_ops_s(ops: int, profile: DeviceProfile, jobs: int = 1) -> float:
    """``ops / (npu.peak_int8_ops_per_s x npu.prefill_efficiency) + jobs x npu.job_launch_s``.
    A layer with no ops submits no job."""
    if jobs < 0:
        raise ConfigError("jobs must be >= 0")
    if ops == 0:
        return 0.0
    npu = profile.npu
    return ops / (npu.peak_int8_ops_per_s * npu.prefill_efficiency) + jobs * npu.job_launch_s


def prefill_layer_s(shape: ModelConfig, layer: LayerSize, tokens: int, context_tokens: int,
                    unit: ComputeUnit, profile: DeviceProfile, *, cpu_cores: int | None = None,
                    npu_jobs: int = 1) -> float:
    """Prefill time of one layer on ``unit`` (``npu_jobs``: jobs submitted for the layer)."""
    ops = prefill_ops(shape, layer, tokens, context_tokens)
    if unit is ComputeUnit.CPU:
        return cpu_ops_s(ops, profile, cpu_cores)
    return npu_ops_s(ops, profile, npu_jobs)


def prefill_s(shape: ModelConfig, tokens: int, unit: ComputeUnit, profile: DeviceProfile,
              context_tokens: int = 0) -> float:
    """Whole-model prefill: the sum of :func:`prefill_layer_s` over :func:`layer_sizes`."""
    return sum(prefill_layer_s(shape, layer, tokens, context_tokens, unit, profile)
               for layer in layer_sizes(shape))


# --- decode ---------------------------------------------------------------------------------

def decode_bytes(shape: ModelConfig, layer: LayerSize, context_tokens: int) -> int:
    """Bytes one decoded token reads from memory in ``layer``.

    Block: its Q8_0 weights (+ F32 norms) and the K and V of ``context_tokens + 1`` positions
    (fp16). Embed: one Q8_0 row. Output: norm + the head matrix (tied or not).
    """
    _check_tokens(0, context_tokens)
    kind = layer_kind(layer)
    if kind is LayerKind.BLOCK:
        kv = 2 * shape.kv_dim * (context_tokens + 1) * KV_BYTES_PER_VALUE
        return layer.q8_0_bytes + kv
    if kind is LayerKind.OUTPUT:
        return q8_0_matrix_bytes(head_params(shape)) + layer.vector_params * F32_BYTES
    return q8_0_matrix_bytes(shape.d_model)


def decode_layer_s(shape: ModelConfig, layer: LayerSize, context_tokens: int, unit: ComputeUnit,
                   profile: DeviceProfile, *, npu_jobs: int = 1) -> float:
    """Decode time of one layer for one token: ``decode_bytes / rate``.

    CPU: ``cpu.decode_bytes_per_s`` (measured for the whole big cluster, so no core count).
    NPU: ``npu.decode_bytes_per_s`` plus ``npu_jobs x npu.job_launch_s`` (none for the embed
    row gather).
    """
    size = decode_bytes(shape, layer, context_tokens)
    if unit is ComputeUnit.CPU:
        return size / profile.cpu.decode_bytes_per_s
    if npu_jobs < 0:
        raise ConfigError("npu_jobs must be >= 0")
    jobs = 0 if layer_kind(layer) is LayerKind.EMBED else npu_jobs  # the row gather is no job
    return size / profile.npu.decode_bytes_per_s + jobs * profile.npu.job_launch_s


def decode_token_bytes(shape: ModelConfig, context_tokens: int) -> int:
    """Bytes read to decode one token with ``context_tokens`` cached."""
    return sum(decode_bytes(shape, layer, context_tokens) for layer in layer_sizes(shape))


def decode_token_s(shape: ModelConfig, context_tokens: int, unit: ComputeUnit,
                   profile: DeviceProfile, *, npu_jobs_per_layer: int = 1) -> float:
    """One decoded token, all layers (NPU: ``npu_jobs_per_layer`` on blocks and the head)."""
    return sum(decode_layer_s(shape, layer, context_tokens, unit, profile,
                              npu_jobs=npu_jobs_per_layer)
               for layer in layer_sizes(shape))


def decode_tokens_per_s(shape: ModelConfig, context_tokens: int, unit: ComputeUnit,
                        profile: DeviceProfile, *, npu_jobs_per_layer: int = 1) -> float:
    return 1.0 / decode_token_s(shape, context_tokens, unit, profile,
                                npu_jobs_per_layer=npu_jobs_per_layer)
