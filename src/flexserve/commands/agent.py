"""``flexserve agent WORKFLOW``: an agent workflow through the multi-model scheduler.

A workflow whose models are all bundled (``quiz``) runs for real on the emulated device and
prints each call's text; one on the paper's shape-only models (``router``,
``plan-act-summarize``, ``rag-rewrite``) is timed on Strawman, Strawman-OPT and FlexServe.
WORKFLOW is a builtin name or a TOML file (docs/workflows.md).
"""

from __future__ import annotations

import argparse
import sys

from flexserve.commands import Command
from flexserve.commands._options import add_sampling_options, sampling_params
from flexserve.errors import ConfigError
from flexserve.soc.constants import GIB

SYSTEM_NAMES = ("strawman", "strawman-opt", "flexserve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.timing.profile import DEFAULT_PROFILE
    from flexserve.workflow.builtin import BUILTIN_WORKFLOWS

    parser.add_argument("workflow", help=f"builtin ({', '.join(BUILTIN_WORKFLOWS)}) or a "
                                         ".toml file")
    parser.add_argument("--system", "-s", choices=SYSTEM_NAMES, default=None,
                        help="one system only (default: all three)")
    parser.add_argument("--runs", type=int, default=3,
                        help="invocations in one session; the first is cold (default: 3)")
    parser.add_argument("--cache-gib", type=float, default=None,
                        help="Flex-Mem cache in GiB (default: 4 timing-only, 0.5 real)")
    parser.add_argument("--undeclared", action="store_true",
                        help="do not declare the workflow: the scheduler learns the next "
                             "model from the invocation history")
    parser.add_argument("--no-prefetch", action="store_true",
                        help="do not prefetch the next model's layers during decode")
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help=f"device profile name or TOML path (default: {DEFAULT_PROFILE})")
    add_sampling_options(parser, max_tokens=48)


def run(args: argparse.Namespace) -> int:
    from flexserve.catalog import resolve
    from flexserve.timing.profile import load_profile
    from flexserve.workflow.builtin import workflow

    if args.runs < 1:
        raise ConfigError("--runs must be >= 1")
    wf = workflow(args.workflow)
    profile = load_profile(args.profile)
    names = (args.system,) if args.system else SYSTEM_NAMES
    real = all(resolve(model).path is not None for model in wf.models())
    print(f"workflow {wf.name}: {wf.description}")
    if real:
        return _run_real(wf, names, profile, args)
    return _run_timing(wf, names, profile, args)


def _run_timing(wf, names, profile, args) -> int:
    from flexserve.systems.agent import run_timing
    from flexserve.systems.config import system
    from flexserve.ui.table import format_table

    cache = int((4.0 if args.cache_gib is None else args.cache_gib) * GIB)
    rows, calls = [], []
    for name in names:
        runs = run_timing(wf, system(name), profile, cache, runs=args.runs,
                          declared=not args.undeclared, prefetch=not args.no_prefetch)
        warm = runs[1:] or runs
        rows.append([system(name).label, f"{runs[0].latency_s:.2f}",
                     f"{sum(r.latency_s for r in warm) / len(warm):.2f}",
                     f"{sum(c.ttft_s for c in warm[-1].calls):.2f}"])
        calls += [[system(name).label, c.name, c.model, str(c.prompt_tokens),
                   str(c.output_tokens), f"{c.ttft_s:.3f}", f"{c.latency_s:.2f}",
                   str(c.resident_layers), str(c.prefetched_layers)] for c in warm[-1].calls]
    print(f"modeled on {profile.name}, timing only, {cache / GIB:g} GiB cache, "
          f"{args.runs} runs")
    print(format_table(["system", "cold run s", "warm run s", "warm sum of TTFT s"], rows))
    print()
    print(format_table(["system", "call", "model", "prompt", "output", "TTFT s", "latency s",
                        "resident layers", "prefetched"], calls))
    return 0


def _run_real(wf, names, profile, args) -> int:
    from flexserve.systems.agent import run_real
    from flexserve.systems.config import system
    from flexserve.systems.session import DeviceSession

    cache = int((0.5 if args.cache_gib is None else args.cache_gib) * GIB)
    params = sampling_params(args)
    for name in names:
        with DeviceSession(system(name), profile, cache_bytes=cache) as session:
            for i in range(args.runs):
                print(f"\n[{system(name).label}, run {i + 1}]")
                done = run_real(wf, session, params, on_call=_print_call)
                print(f"modeled end-to-end latency: {done.latency_s:.2f} s")
        sys.stdout.flush()
    return 0


def _print_call(call) -> None:
    print(f"--- {call.name} ({call.model}): TTFT {call.ttft_s:.3f} s, latency "
          f"{call.latency_s:.2f} s, {call.resident_layers} layers resident")
    print(call.text)


COMMAND = Command("agent", "Run an agent workflow through the multi-model scheduler (real text "
                           "for bundled models, timing only for the paper's).", add_arguments,
                  run)
