"""Options shared by the commands that generate text."""

from __future__ import annotations

import argparse

from flexserve.catalog import DEFAULT_MODEL
from flexserve.errors import ConfigError


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", "-m", default=DEFAULT_MODEL,
        help=f"catalog name or path of a .gguf file (default: {DEFAULT_MODEL})",
    )


def add_sampling_options(parser: argparse.ArgumentParser, max_tokens: int = 128) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--max-tokens", "-n", type=int, default=max_tokens,
                       help=f"most tokens to generate (default: {max_tokens})")
    group.add_argument("--temperature", "-t", type=float, default=0.0,
                       help="0 for greedy decoding (default: 0)")
    group.add_argument("--top-k", type=int, default=0, help="keep the k most likely (0: off)")
    group.add_argument("--top-p", type=float, default=1.0, help="nucleus mass in (0, 1]")
    group.add_argument("--repetition-penalty", type=float, default=1.0,
                       help="penalty > 1 discourages repeats (default: 1.0, off)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="stop when this text appears (repeatable)")


def sampling_params(args: argparse.Namespace):  # -> SamplingParams
    """Build validated sampling parameters; invalid values raise ConfigError."""
    from flexserve.engine.sampling import SamplingParams

    return SamplingParams(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
        max_tokens=args.max_tokens,
        stop=tuple(args.stop),
    )


def positive_ints(text: str, what: str) -> tuple[int, ...]:
    """A comma-separated list of integers >= 1 (``what`` names the option in errors)."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{what} must be positive")
    return values
