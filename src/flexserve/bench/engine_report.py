"""Tables for the host engine benchmark."""

from __future__ import annotations

from flexserve.bench.engine_bench import EngineResult, Samples
from flexserve.ui.table import format_table


def _fmt(samples: Samples, scale: float = 1.0, digits: int = 1) -> str:
    low, high = samples.spread()
    return (f"{samples.median * scale:.{digits}f} "
            f"[{low * scale:.{digits}f}-{high * scale:.{digits}f}]")


def _ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs > 0 else "-"


def figures_table(results: list[EngineResult]) -> str:
    """One row per engine and prompt length: medians with [min-max]."""
    header = ["ENGINE", "PROMPT", "TTFT ms", "PREFILL tok/s", "DECODE tok/s"]
    rows = [
        [result.engine, str(n), _fmt(row.ttft_s, 1000.0, 0),
         _fmt(row.prefill_tokens_per_s, digits=0), _fmt(row.decode_tokens_per_s)]
        for result in results
        for n, row in sorted(result.per_length.items())
    ]
    return format_table(header, rows)


def ratio_table(ours: EngineResult, reference: EngineResult) -> str:
    """Ours over the reference: above 1.00x is faster for throughput, TTFT as ref/ours."""
    header = ["PROMPT", "TTFT speedup", "PREFILL ratio", "DECODE ratio"]
    rows = []
    for n, row in sorted(ours.per_length.items()):
        ref = reference.per_length[n]
        rows.append([
            str(n),
            _ratio(ref.ttft_s.median, row.ttft_s.median),
            _ratio(row.prefill_tokens_per_s.median, ref.prefill_tokens_per_s.median),
            _ratio(row.decode_tokens_per_s.median, ref.decode_tokens_per_s.median),
        ])
    return format_table(header, rows)


def memory_table(results: list[EngineResult]) -> str:
    header = ["ENGINE", "LOAD s", "PEAK RSS MiB"]
    rows = [[r.engine, f"{r.load_s:.2f}", f"{r.peak_rss_bytes / 2**20:.0f}"] for r in results]
    return format_table(header, rows)
