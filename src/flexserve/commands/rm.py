"""``flexserve rm NAME``: remove a model's sealed blobs (all versions) and sidecar."""

from __future__ import annotations

import argparse
import sys

from flexserve.commands import Command
from flexserve.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="an imported or bundled model name")
    parser.add_argument("--yes", "-y", action="store_true",
                        help="do not ask for confirmation")


def _confirmed(question: str) -> bool:
    """Ask on a terminal; without one, only --yes may remove anything."""
    if not sys.stdin.isatty():
        raise ConfigError("not a terminal: pass --yes to remove without confirmation")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    from flexserve.catalog.removal import removal_target
    from flexserve.tee.sealing.store import ModelStore
    from flexserve.ui.units import human_bytes

    store = ModelStore.default()
    target = removal_target(store, args.name)
    stored = store.stored(target)
    total = sum(s.blob_bytes for s in stored)
    question = (f"remove {target}: {len(stored)} sealed version(s), {human_bytes(total)}"
                f"{' and its sidecar' if store.sidecar_path(target).exists() else ''}?")
    if not args.yes and not _confirmed(question):
        print("nothing removed")
        return 1
    for path in store.remove(target):
        print(f"removed {path}")
    counter = store.minimum_version(target)
    print(f"the anti-rollback counter of {target} stays at {counter}: the next seal is version "
          f"{counter + 1}, and no version below {counter} can be installed again")
    return 0


COMMAND = Command("rm", "Remove a model's sealed blobs and sidecar from the store.",
                  add_arguments, run)
