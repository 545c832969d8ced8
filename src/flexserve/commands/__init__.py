"""Subcommands of the ``flexserve`` CLI, as a table the parser is built from."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _table() -> tuple[Command, ...]:
    from flexserve.commands import (
        agent,
        bench,
        chat,
        generate,
        import_model,
        models,
        rm,
        run,
        seal,
        serve,
    )

    return (generate.COMMAND, chat.COMMAND, run.COMMAND, agent.COMMAND, models.COMMAND,
            seal.COMMAND, import_model.COMMAND, rm.COMMAND, bench.COMMAND, serve.COMMAND)


COMMANDS: tuple[Command, ...] = _table()
