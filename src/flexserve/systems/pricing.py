"""Seconds per recorded stage, for one system (policy: which mechanism a system uses).

All functions return one-core (or one-device) seconds from the stage's counts and the device
profile via :mod:`flexserve.timing.costs` / :mod:`flexserve.timing.compute`; the DAG builder
decides how they overlap.
"""

from __future__ import annotations

from flexserve.catalog.shapes import LayerSize, layer_sizes
from flexserve.engine.config import ModelConfig
from flexserve.soc.work import WorkRecord
from flexserve.systems.config import MemoryKind, NpuHandover, SystemConfig
from flexserve.tee.framework.trace import Stage
from flexserve.timing import compute, costs
from flexserve.timing.profile import DeviceProfile


def _record(stage: Stage, source: str) -> WorkRecord:
    return stage.work.get(source, WorkRecord())


def alloc_s(pages: int, system: SystemConfig, profile: DeviceProfile,
            stage: Stage | None = None) -> float:
    """Memory for ``pages``: buddy pages, a CMA window + TZASC region, or ``rsmem_alloc``."""
    if system.memory is MemoryKind.NORMAL:
        return costs.buddy_alloc_s(pages, profile)
    if system.memory is MemoryKind.CMA:
        migrated = round(pages * system.cma_occupied_fraction)
        return (costs.cma_alloc_s(pages, migrated, profile, system.cma_threads)
                + costs.tzasc_config_s(1, profile))
    if stage is None:  # one rsmem_alloc call for all pages (no recorded stage)
        return (costs.flexmem_alloc_s(pages, profile).core_s + costs.smc_s(1, profile)
                + costs.world_switch_s(2, profile))
    kernel = costs.price(_record(stage, "kernel"), profile)
    protect = costs.price(_record(stage, "monitor"), profile, basis=costs.Basis.FLEXMEM_PROTECT)
    return kernel.core_s + protect.core_s


def flash_s(stage: Stage, system: SystemConfig, plaintext_bytes: int,
            profile: DeviceProfile) -> float:
    """Reading the layer from flash (the ciphertext; plaintext for an unprotected system)."""
    n_bytes = stage.n_bytes if system.secure else plaintext_bytes
    return costs.flash_read_s(n_bytes, max(1, stage.requests), profile)


def bounce_copy_s(stage: Stage, system: SystemConfig, profile: DeviceProfile) -> float:
    """The secure side's copy out of the file service's pages, and those pages' allocation."""
    if not system.secure:
        return 0.0
    return (costs.price(_record(stage, "secure"), profile).core_s
            + costs.price(_record(stage, "kernel"), profile).core_s)


def decrypt_s(stage: Stage, profile: DeviceProfile) -> float:
    """AES-256-GCM over the layer on one core, plus writing the plaintext into its frames."""
    return (costs.decrypt_s(stage.n_bytes, profile, 1)
            + costs.price(_record(stage, "secure"), profile).core_s)


def layer_shapes(shape: ModelConfig) -> dict[str, LayerSize]:
    return {layer.name: layer for layer in layer_sizes(shape)}


def prefill_s(shape: ModelConfig, layer: LayerSize, tokens: int, system: SystemConfig,
              profile: DeviceProfile, context_tokens: int = 0) -> float:
    """One layer of prefill of ``tokens`` new tokens after ``context_tokens`` whose KV is
    already cached; CPU time is for one core (the DAG shards it over the cores)."""
    if system.compute is compute.ComputeUnit.CPU:
        ops = compute.prefill_ops(shape, layer, tokens, context_tokens)
        return compute.cpu_ops_s(ops, profile, cores=1)
    return compute.prefill_layer_s(shape, layer, tokens, context_tokens,
                                   compute.ComputeUnit.NPU, profile,
                                   npu_jobs=system.npu_jobs_per_layer)


def kv_restore_s(n_bytes: int, profile: DeviceProfile) -> tuple[float, float]:
    """A written-back KV cache: (flash read, AES-GCM decryption on one core)."""
    return costs.flash_read_s(n_bytes, 1, profile), costs.decrypt_s(n_bytes, profile, 1)


def npu_handover_s(system: SystemConfig, profile: DeviceProfile) -> float:
    """Bringing the NPU into the secure world once per request."""
    if system.npu_handover is NpuHandover.REINIT:
        return costs.npu_reinit_s(1, profile)
    if system.npu_handover is NpuHandover.FLEX_NPU:
        return costs.npu_mode_switch_s(1, profile)
    return 0.0


def decode_tokens_per_s(shape: ModelConfig, prompt_tokens: int, tokens: int,
                        system: SystemConfig, profile: DeviceProfile) -> float:
    """Mean decode rate over ``tokens`` steps after a prompt of ``prompt_tokens``."""
    steps = max(1, tokens)
    return steps / decode_s(shape, prompt_tokens, steps, system, profile)


def decode_s(shape: ModelConfig, context_tokens: int, tokens: int, system: SystemConfig,
             profile: DeviceProfile) -> float:
    """Device time of ``tokens`` decode steps, the first with ``context_tokens`` in the cache."""
    return sum(compute.decode_token_s(shape, context_tokens + k, system.compute, profile,
                                      npu_jobs_per_layer=system.npu_jobs_per_layer)
               for k in range(tokens))
