"""Free-memory watermarks (min / low / high), sized the way Linux sizes them by default.

min: ``sqrt(16 * memory_KiB)`` KiB clamped to [128 KiB, 256 MiB] (``min_free_kbytes``);
low and high: each a further ``max(min / 4, 0.1% of memory)`` above the previous one
(``watermark_scale_factor`` = 10). Below *low* the OS reclaims up to *high*; an allocation that
would leave less than *min* free must wait for reclaim or a kill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flexserve.errors import ConfigError
from flexserve.nwos.page import PAGE_SIZE_BYTES


@dataclass(frozen=True)
class Watermarks:
    min_pages: int
    low_pages: int
    high_pages: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_pages <= self.low_pages <= self.high_pages:
            raise ConfigError("watermarks must satisfy 0 <= min <= low <= high")

    @classmethod
    def for_memory(cls, total_pages: int) -> Watermarks:
        mem_kib = total_pages * PAGE_SIZE_BYTES // 1024
        min_kib = min(max(int(math.sqrt(16 * mem_kib)), 128), 256 * 1024)
        min_pages = min_kib * 1024 // PAGE_SIZE_BYTES
        step_pages = max(min_pages // 4, total_pages // 1000)
        return cls(min_pages, min_pages + step_pages, min_pages + 2 * step_pages)
