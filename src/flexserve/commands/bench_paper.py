"""``flexserve bench paper`` and ``flexserve bench FIGURE``: the paper's figures, reproduced in
timing-only mode.

Writes one CSV and one PNG per figure, ``config.json`` and ``REPORT.md`` (our figures beside
the paper's, with the ratio and a note on each gap) under ``--out``; ``--only`` picks figures.
``flexserve bench fig7`` (any figure name) is ``bench paper --only fig7`` with its own default
folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flexserve.commands import Command

DEFAULT_OUT = Path("flexserve-paper")


def _common(parser: argparse.ArgumentParser, default_out: Path) -> None:
    from flexserve.timing.profile import DEFAULT_PROFILE

    parser.add_argument("--out", type=Path, default=default_out,
                        help=f"output folder (default: ./{default_out})")
    parser.add_argument("--quick", action="store_true", help="CI-sized grids (seconds)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help=f"device profile name or TOML path (default: {DEFAULT_PROFILE})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.bench.paper.runner import FIGURES

    _common(parser, DEFAULT_OUT)
    parser.add_argument("--only", default=None,
                        help=f"comma-separated figures ({', '.join(FIGURES)}); default: all")


def _run_figures(args: argparse.Namespace, only: list[str] | None) -> int:
    from flexserve.bench.paper.runner import FIGURES, run_all
    from flexserve.errors import ConfigError
    from flexserve.timing.profile import load_profile
    from flexserve.ui.progress import ProgressBar

    profile = load_profile(args.profile)
    with ProgressBar("figures", len(only or FIGURES)) as bar:
        def starting(name: str, done: int, total: int) -> None:
            bar.label = f"figures ({name:<7})"
            bar.update(done, total)

        try:
            figures = run_all(profile, args.out, quick=args.quick, only=only,
                              progress=lambda _name, done, total: bar.update(done, total),
                              starting=starting)
        except OSError as exc:
            raise ConfigError(f"cannot write under {args.out}: {exc}") from None
    for figure in figures:
        print(f"{figure.name}: {args.out / (figure.name + '.csv')}, "
              f"{args.out / (figure.name + '.png')}")
    print(f"report: {args.out / 'REPORT.md'}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    return _run_figures(args, only)


def _figure_command(name: str, summary: str) -> Command:
    def add(parser: argparse.ArgumentParser) -> None:
        _common(parser, Path(f"flexserve-paper-{name}"))

    def run_one(args: argparse.Namespace) -> int:
        return _run_figures(args, [name])

    return Command(name, f"{summary} (one figure of 'bench paper')", add, run_one)


def figure_suites() -> tuple[Command, ...]:
    """One ``flexserve bench FIGURE`` command per reproduced figure."""
    from flexserve.bench.paper.runner import FIGURES, summary

    return tuple(_figure_command(name, summary(name)) for name in FIGURES)


SUITE = Command("paper", "The paper's figures in timing-only mode: CSV + PNG per figure and a "
                         "REPORT.md beside the paper's values.", add_arguments, run)
