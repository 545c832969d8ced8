"""``flexserve bench engine``: host prefill/decode speed, beside llama.cpp when installed."""

from __future__ import annotations

import argparse
import sys

from flexserve.commands import Command
from flexserve.commands._options import add_model_option, positive_ints
from flexserve.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_option(parser)
    parser.add_argument("--lengths", default="32,128,512", help="prompt lengths in tokens")
    parser.add_argument("--decode-tokens", type=int, default=64, help="decode steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per prompt length")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for each engine")
    parser.add_argument("--no-llamacpp", action="store_true",
                        help="skip llama.cpp even when llama-cpp-python is installed")


def _run_engine_suite(args: argparse.Namespace) -> int:
    from flexserve.bench import engine_report
    from flexserve.bench.engine_bench import EngineBenchConfig, llamacpp_available, run_engine

    if args.repeats < 1 or args.decode_tokens < 1 or args.threads < 1:
        raise ConfigError("--repeats, --decode-tokens and --threads must be at least 1")
    lengths = positive_ints(args.lengths, "--lengths")
    config = EngineBenchConfig(args.model, lengths, args.decode_tokens, args.repeats,
                               args.threads)
    engines = ["ours"]
    if not args.no_llamacpp and llamacpp_available():
        engines.append("llamacpp")
    results = []
    for engine in engines:
        print(f"measuring {engine} ...", file=sys.stderr)
        results.append(run_engine(engine, config))
    print(f"model {args.model}, {args.threads} threads, {args.decode_tokens} decode steps, "
          f"median [min-max] of {args.repeats}")
    print(engine_report.figures_table(results))
    if len(results) == 2:
        print()
        print(engine_report.ratio_table(results[0], results[1]))
    else:
        print("\n(llama.cpp not measured: install the optional extra, "
              "pip install -e '.[llamacpp]')")
    print()
    print(engine_report.memory_table(results))
    return 0


SUITE = Command("engine", "Host engine speed: prefill, decode and TTFT per prompt length "
                          "(and llama.cpp's on the same GGUF when installed).", add_arguments,
                _run_engine_suite)
