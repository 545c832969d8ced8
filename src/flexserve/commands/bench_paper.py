"""``flexserve bench paper``: the paper's figures, reproduced in timing-only mode.

Writes one CSV and one PNG per figure, ``config.json`` and ``REPORT.md`` (our figures beside
the paper's, with the ratio and a note on each gap) under ``--out``; ``--only`` picks figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flexserve.commands import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.bench.paper.runner import FIGURES
    from flexserve.timing.profile import DEFAULT_PROFILE

    parser.add_argument("--out", type=Path, default=Path("flexserve-paper"),
                        help="output folder (default: ./flexserve-paper)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated figures ({', '.join(FIGURES)}); default: all")
    parser.add_argument("--quick", action="store_true", help="CI-sized grids (seconds)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help=f"device profile name or TOML path (default: {DEFAULT_PROFILE})")


def run(args: argparse.Namespace) -> int:
    from flexserve.bench.paper.runner import FIGURES, run_all
    from flexserve.errors import ConfigError
    from flexserve.timing.profile import load_profile
    from flexserve.ui.progress import ProgressBar

    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    profile = load_profile(args.profile)
    with ProgressBar("figures", len(only or FIGURES)) as bar:
        try:
            figures = run_all(profile, args.out, quick=args.quick, only=only,
                              progress=lambda _name, done, total: bar.update(done, total))
        except OSError as exc:
            raise ConfigError(f"cannot write under {args.out}: {exc}") from None
    for figure in figures:
        print(f"{figure.name}: {args.out / (figure.name + '.csv')}, "
              f"{args.out / (figure.name + '.png')}")
    print(f"report: {args.out / 'REPORT.md'}", file=sys.stderr)
    return 0


SUITE = Command("paper", "The paper's figures in timing-only mode: CSV + PNG per figure and a "
                         "REPORT.md beside the paper's values.", add_arguments, run)
