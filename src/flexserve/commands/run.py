"""``flexserve run PROMPT``: secure inference on the emulated device, with modeled device time.

By default FlexServe serves the bundled SmolLM2 on the RK3588 profile: the answer is real
text decrypted and computed inside the emulated TEE; below it come the modeled TTFT, decode
tokens/s and the TTFT breakdown. ``--compare`` runs the same request on all four systems.
Shape-only models (the paper's Qwen3 / Llama 3.x) are timed without text: ``--prompt-tokens``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flexserve.commands import Command
from flexserve.commands._options import add_model_option, add_sampling_options, sampling_params
from flexserve.errors import ConfigError

BREAKDOWN_ORDER = ("compute", "decrypt", "io", "alloc", "init", "other", "idle")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.systems.config import FLEXSERVE, SYSTEMS
    from flexserve.timing.profile import DEFAULT_PROFILE

    parser.add_argument("prompt", nargs="?", default=None,
                        help="the prompt text ('-' reads stdin); not needed for shape-only "
                             "models")
    add_model_option(parser)
    parser.add_argument("--system", "-s", choices=sorted(SYSTEMS), default=FLEXSERVE.name,
                        help=f"which system serves the request (default: {FLEXSERVE.name})")
    parser.add_argument("--compare", action="store_true",
                        help="run the request on all four systems, side by side")
    parser.add_argument("--prompt-tokens", type=int, default=None, metavar="N",
                        help="prompt length for shape-only models (timing only)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help=f"device profile name or TOML path (default: {DEFAULT_PROFILE})")
    parser.add_argument("--trace", type=Path, default=None, metavar="FILE",
                        help="write the modeled timeline as Chrome trace JSON (with --compare "
                             "one file per system: FILE stem + .<system>.json)")
    parser.add_argument("--gantt", type=Path, default=None, metavar="FILE.png",
                        help="draw the modeled timeline as a Gantt chart (with --compare one "
                             "file per system, named as for --trace)")
    parser.add_argument("--raw", action="store_true",
                        help="complete the text as is, without the chat template")
    parser.add_argument("--system-prompt", default=None,
                        help="system message for the chat template")
    add_sampling_options(parser, max_tokens=64)


def run(args: argparse.Namespace) -> int:
    from flexserve.systems.config import SYSTEMS, system
    from flexserve.systems.runner import Prompt, run_systems
    from flexserve.timing.profile import load_profile

    params = sampling_params(args)
    profile = load_profile(args.profile)
    chosen = list(SYSTEMS.values()) if args.compare else [system(args.system)]
    text = sys.stdin.read() if args.prompt == "-" else args.prompt
    prompt = Prompt(text, args.raw, args.system_prompt) if text is not None else None
    runs = run_systems(args.model, chosen, profile, prompt, params,
                       prompt_tokens=args.prompt_tokens)
    _print_answers(runs)
    print(f"modeled device time on {profile.name}:")
    print(_table(runs, args.compare))
    if args.trace is not None:
        _write_each(runs, args.trace, _chrome_trace, "trace")
    if args.gantt is not None:
        _write_each(runs, args.gantt, _gantt, "gantt")
    return 0


def _print_answers(runs) -> None:
    shown: set[str] = set()
    for r in runs:
        if r.answer is None or r.answer.text in shown:
            continue
        if len(runs) > 1:
            same = [x.system.label for x in runs if x.answer and x.answer.text == r.answer.text]
            print(f"[{', '.join(same)}]")
        print(r.answer.text)
        shown.add(r.answer.text)
    if shown:
        print()


def _table(runs, compare: bool) -> str:
    from flexserve.ui.table import format_table

    header = ["system", "TTFT s", "decode tok/s", *[f"{c} s" for c in BREAKDOWN_ORDER]]
    rows = [[r.system.label, f"{r.timing.ttft_s:.3f}", f"{r.timing.decode_tokens_per_s:.2f}",
             *[f"{r.timing.breakdown.get(c, 0.0):.3f}" for c in BREAKDOWN_ORDER]] for r in runs]
    table = format_table(header, rows)
    if compare:
        base = next((r for r in runs if r.system.name == "flexserve"), None)
        if base is not None:
            speedups = ", ".join(f"{r.system.label} {r.timing.ttft_s / base.timing.ttft_s:.2f}x"
                                 for r in runs if r is not base)
            table += f"\nFlexServe TTFT speedup over: {speedups}"
    return table


def _chrome_trace(run, target: Path) -> None:
    from flexserve.timing.trace import write_chrome_trace

    write_chrome_trace(run.timing.log, target, process_name=run.system.label)


def _gantt(run, target: Path) -> None:
    from flexserve.timing.gantt import save_gantt_png

    title = (f"{run.system.label}: {run.trace.model}, {run.trace.prompt_tokens} prompt tokens, "
             f"TTFT {run.timing.ttft_s:.3f} s (modeled)")
    save_gantt_png(run.timing.log, target, title=title)


def _write_each(runs, path: Path, write, what: str) -> None:
    """One file for one run; for several, FILE stem + .<system> + FILE suffix each."""
    if len(runs) == 1:
        targets = [(runs[0], path)]
    else:
        targets = [(r, path.with_name(f"{path.stem}.{r.system.name}{path.suffix}"))
                   for r in runs]
    for r, target in targets:
        try:
            write(r, target)
        except OSError as exc:
            raise ConfigError(f"cannot write the {what} {target}: {exc}") from None
        print(f"{what}: {target}", file=sys.stderr)


COMMAND = Command("run", "Serve one prompt securely on the emulated device, with modeled "
                         "device time (--compare: all four systems).", add_arguments, run)
