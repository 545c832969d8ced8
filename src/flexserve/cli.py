"""The ``flexserve`` command: one entry point, one module per subcommand.

Every error FlexServe raises on purpose is a :class:`FlexServeError`; here it becomes a one-line
message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flexserve import __version__
from flexserve.commands import COMMANDS
from flexserve.errors import FlexServeError

EXIT_USAGE_OR_INPUT = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flexserve",
        description="Fast and secure on-device LLM serving on an emulated TrustZone SoC.",
    )
    parser.add_argument("--version", action="version", version=f"flexserve {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FlexServeError as exc:
        print(f"flexserve: error: {exc}", file=sys.stderr)
        return EXIT_USAGE_OR_INPUT
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
