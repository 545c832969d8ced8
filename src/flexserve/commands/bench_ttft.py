"""``flexserve bench ttft`` and ``flexserve bench breakdown``: the four systems' cold start."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flexserve.commands import Command
from flexserve.commands._options import positive_ints
from flexserve.errors import ConfigError
from flexserve.soc.constants import GIB


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ConfigError("--models needs at least one model")
    return names


def _maybe_csv(write, rows, path: Path | None) -> None:
    """Write ``rows`` with ``write(rows, path)`` if a path was given; errors are one line."""
    if path is None:
        return
    try:
        write(rows, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from None
    print(f"csv: {path}", file=sys.stderr)


def _add_profile(parser: argparse.ArgumentParser) -> None:
    from flexserve.timing.profile import DEFAULT_PROFILE

    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help=f"device profile name or TOML path (default: {DEFAULT_PROFILE})")


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.bench.ttft import TTFT_MODELS, TTFT_PROMPT_TOKENS

    parser.add_argument("--models", default=",".join(TTFT_MODELS),
                        help="comma-separated shape-only models")
    parser.add_argument("--lengths", default=",".join(map(str, TTFT_PROMPT_TOKENS)),
                        help="comma-separated prompt lengths in tokens")
    _add_profile(parser)
    parser.add_argument("--checkpointed-init", action="store_true",
                        help="every system restores its framework init from a checkpoint "
                             "(TZ-LLM's technique; a sensitivity setting)")
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE",
                        help="also write every point as CSV")


def run_sweep(args: argparse.Namespace) -> int:
    from flexserve.bench import ttft, ttft_report
    from flexserve.systems.config import SYSTEMS
    from flexserve.timing.profile import load_profile
    from flexserve.ui.progress import ProgressBar

    profile = load_profile(args.profile)
    models, lengths = _names(args.models), positive_ints(args.lengths, "--lengths")
    systems = list(SYSTEMS.values())
    if args.checkpointed_init:
        systems = ttft.with_checkpointed_init(systems)
    with ProgressBar("timing", len(models) * len(lengths)) as bar:
        points = ttft.ttft_sweep(profile, models, lengths, systems, on_progress=bar.update)
    init = ", framework init from a checkpoint" if args.checkpointed_init else ""
    print(f"modeled cold-start TTFT on {profile.name} (no cache, timing-only mode{init})")
    print(ttft_report.sweep_table(points))
    print()
    print(ttft_report.per_model_table(points))
    print()
    print(ttft_report.headline_table(points))
    _maybe_csv(ttft.write_csv, points, args.csv)
    return 0


def add_breakdown_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", default="llama3.1-8b", help="shape-only model")
    parser.add_argument("--prompt-tokens", type=int, default=128, metavar="N",
                        help="prompt length in tokens (default: 128, as in the paper's Fig. 2)")
    _add_profile(parser)


def run_breakdown(args: argparse.Namespace) -> int:
    from flexserve.bench import published, ttft, ttft_report
    from flexserve.systems.config import SYSTEMS
    from flexserve.timing.profile import load_profile

    profile = load_profile(args.profile)
    point = ttft.time_point(args.model, args.prompt_tokens, profile)
    print(f"TTFT breakdown, {args.model}, {args.prompt_tokens}-token prompt, modeled on "
          f"{profile.name}")
    print(ttft_report.breakdown_table(point, list(SYSTEMS)))
    n = published.TZLLM_STRAWMAN_PROMPT_TOKENS
    strawman = point if args.prompt_tokens == n else ttft.time_point(args.model, n, profile)
    print()
    print(f"our Strawman at {n} tokens beside TZ-LLM's measured strawman")
    print(ttft_report.tzllm_table(strawman))
    return 0


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.bench import cache_ttft

    parser.add_argument("--sets", default=",".join(cache_ttft.PROMPT_SETS),
                        help="comma-separated prompt sets (sharegpt stands in for UltraChat)")
    parser.add_argument("--requests", type=int, default=cache_ttft.DEFAULT_REQUESTS,
                        help="requests per pair and prompt set")
    parser.add_argument("--cache-gib", type=float, default=cache_ttft.DEFAULT_CACHE_BYTES / GIB,
                        help="Flex-Mem cache budget in GiB (default: 4, as in the paper)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request sequence")
    _add_profile(parser)
    parser.add_argument("--csv", type=Path, default=None, metavar="FILE",
                        help="also write every request's TTFT as CSV")


def run_cache(args: argparse.Namespace) -> int:
    from flexserve.bench import cache_ttft, ttft_report
    from flexserve.bench.prompt_lengths import prompt_set
    from flexserve.timing.profile import load_profile
    from flexserve.ui.progress import ProgressBar

    if args.requests < 2 or args.cache_gib < 0:
        raise ConfigError("--requests must be >= 2 and --cache-gib >= 0")
    profile = load_profile(args.profile)
    lengths = {name: prompt_set(name, limit=max(args.requests, 1)).lengths
               for name in _names(args.sets)}
    with ProgressBar("timing", len(cache_ttft.MODEL_PAIRS) * len(lengths)) as bar:
        results = cache_ttft.cache_sweep(profile, lengths, cache_bytes=int(args.cache_gib * GIB),
                                         n_requests=args.requests, seed=args.seed,
                                         on_progress=bar.update)
    print(f"mean TTFT with a {args.cache_gib:g} GiB Flex-Mem cache, {args.requests} requests "
          f"per workload (modeled on {profile.name}; strawmen have no cache)")
    print(ttft_report.cache_table(results))
    _maybe_csv(cache_ttft.write_csv, results, args.csv)
    return 0


def add_reclaim_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.bench.reclaim import RECLAIM_MIB

    parser.add_argument("--mib", default=",".join(map(str, RECLAIM_MIB)),
                        help="comma-separated sizes to reclaim, in MiB")
    _add_profile(parser)


def run_reclaim(args: argparse.Namespace) -> int:
    from flexserve.bench.reclaim import reclaim_costs
    from flexserve.timing.profile import load_profile
    from flexserve.ui.table import format_table

    profile = load_profile(args.profile)
    rows = [[str(r.asked_mib), f"{r.returned_mib:.0f}", str(r.layers),
             f"{r.device_s * 1e3:.1f}", f"{r.mib_per_s:.0f}"]
            for r in reclaim_costs(profile, positive_ints(args.mib, "--mib"))]
    print(f"rsmem_reclaim of cached weights, modeled on {profile.name} (scrub, stage-2 "
          "re-insert, buddy free)")
    print(format_table(["asked MiB", "returned MiB", "layers", "device ms", "MiB/s"], rows))
    return 0


def add_pressure_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.bench.pressure import LEVELS

    parser.add_argument("--levels", default=",".join(f"{x:g}" for x in LEVELS),
                        help="background memory levels, fractions of DRAM, in order")
    _add_profile(parser)


def run_pressure_suite(args: argparse.Namespace) -> int:
    from flexserve.bench.pressure import DRAM_BYTES, MODELS, run_pressure
    from flexserve.timing.profile import load_profile
    from flexserve.ui.progress import ProgressBar
    from flexserve.ui.table import format_table

    try:
        levels = tuple(float(x) for x in args.levels.split(","))
    except ValueError:
        raise ConfigError(f"--levels must be comma-separated fractions, got {args.levels!r}"
                          ) from None
    if not levels or min(levels) < 0 or max(levels) >= 1:
        raise ConfigError("--levels must be fractions in [0, 1)")
    profile = load_profile(args.profile)
    with ProgressBar("pressure steps", len(levels)) as bar:
        steps = run_pressure(profile, levels=levels, max_tokens=2, on_progress=bar.update)
    names = [m for m, _ in MODELS]
    rows = [[f"{s.level:.0%}", f"{s.app_mib:.0f}", f"{s.cap_mib:.0f}", f"{s.resident_mib:.0f}",
             f"{s.secure_reclaimed_mib:.0f}", str(s.killed),
             *[f"{s.ttft_s[m]:.3f}" for m in names]] for s in steps]
    print(f"FlexServe on a {DRAM_BYTES // (1 << 20)} MiB phone under a background app "
          f"(modeled TTFT on {profile.name}, real mechanisms)")
    print(format_table(["level", "app MiB", "cache cap MiB", "resident MiB",
                        "rsmem_reclaim MiB", "kills", *[f"{m} TTFT s" for m in names]], rows))
    return 0


SWEEP = Command("ttft", "Modeled cold-start TTFT of the four systems on the paper's models and "
                        "the average speedups beside the paper's.", add_sweep_arguments,
                run_sweep)
CACHE = Command("cache", "Mean TTFT with a Flex-Mem cache on the paper's model pairs and the "
                         "four prompt sets (Figure 8).", add_cache_arguments, run_cache)
RECLAIM = Command("reclaim", "How long rsmem_reclaim takes to return N MiB of cached weights "
                             "(real mechanisms, modeled device time).", add_reclaim_arguments,
                   run_reclaim)
PRESSURE = Command("pressure", "FlexServe's cache and TTFT while a background app raises and "
                               "lowers memory pressure (real mechanisms, bundled models).",
                    add_pressure_arguments, run_pressure_suite)
BREAKDOWN = Command("breakdown", "TTFT breakdown (alloc, I/O, decrypt, init, compute) of one "
                                 "model on the four systems, beside TZ-LLM's components.",
                    add_breakdown_arguments, run_breakdown)
