"""``flexserve bench SUITE``: benchmarks, one suite per sub-subcommand (a dispatch table).

- ``engine``: host prefill/decode speed of our engine (and llama.cpp's, when installed);
- ``ttft``: modeled cold-start TTFT of the four systems on the paper's models, with the
  average speedups beside the paper's;
- ``breakdown``: a Figure 2-style TTFT breakdown of one model and prompt length, and our
  Strawman beside TZ-LLM's measured strawman components;
- ``cache``: mean TTFT with a Flex-Mem cache on the model pairs and prompt sets (Figure 8);
- ``reclaim``: the normal-world cost of ``rsmem_reclaim`` for N MiB;
- ``pressure``: the cache and TTFT while a background app raises and lowers pressure;
- ``paper``: every reproduced figure with CSVs, PNGs and a report beside the paper's values;
- ``serve``: the HTTP server under N concurrent streaming clients (throughput, latency).
- ``fig1``, ``fig7``, ... (every name of ``bench paper --only``): one reproduced figure.
"""

from __future__ import annotations

import argparse

from flexserve.commands import Command, bench_engine, bench_paper, bench_serve, bench_ttft

SUITES: tuple[Command, ...] = (bench_engine.SUITE, bench_ttft.SWEEP, bench_ttft.BREAKDOWN,
                               bench_ttft.CACHE, bench_ttft.RECLAIM, bench_ttft.PRESSURE,
                               bench_paper.SUITE, bench_serve.SUITE,
                               *bench_paper.figure_suites())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    suites = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for suite in SUITES:
        sub = suites.add_parser(suite.name, help=suite.help, description=suite.help)
        suite.add_arguments(sub)
        sub.set_defaults(suite_run=suite.run)


def run(args: argparse.Namespace) -> int:
    return int(args.suite_run(args) or 0)


COMMAND = Command("bench", "Run a benchmark suite (engine, ttft, breakdown, cache, reclaim, "
                           "pressure, paper, serve, or one paper figure: fig1, fig7, ...).",
                  add_arguments, run)
