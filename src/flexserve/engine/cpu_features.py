"""What this CPU does fast, read once from ``/proc/cpuinfo``, for choosing compute dtypes.

bfloat16 matrix products are fast only where the CPU has bfloat16 dot-product instructions
(x86 ``avx512_bf16`` or ``amx_bf16``, Arm ``bf16``); elsewhere torch emulates them, and on an
AVX2-only AMD EPYC a ``(128, 576) @ (576, 1536)`` bfloat16 product ran at 1.1 GFLOP/s against
61 GFLOP/s in float32 (torch 2.13, 2 threads). There, bfloat16-valued operands are multiplied
in float32, which gives the same products (bfloat16 values are exact in float32) with float32
accumulation, as torch's bfloat16 kernels accumulate.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor listed in a ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


@cache
def has_fast_bf16() -> bool:
    """True when bfloat16 matrix products run in hardware on this CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return bool(cpu_flags(text) & _BF16_FLAGS)
