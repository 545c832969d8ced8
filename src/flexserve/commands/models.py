"""``flexserve models``: what the catalog knows."""

from __future__ import annotations

import argparse

from flexserve.catalog import CatalogEntry, list_models
from flexserve.catalog.bundled import BundledModel
from flexserve.commands import Command
from flexserve.ui.table import format_table


def _human_bytes(n_bytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{n_bytes} B"


def _human_params(params: int) -> str:
    return f"{params / 1e9:.2f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def _row(entry: CatalogEntry | BundledModel) -> list[str]:
    if isinstance(entry, BundledModel):
        return [entry.name, "-", "-", "-", "-", f"bundled (not installed: {entry.package})"]
    return [
        entry.name,
        entry.architecture,
        _human_params(entry.params),
        entry.quantization,
        _human_bytes(entry.size_bytes),
        entry.kind.value,
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options yet


def run(args: argparse.Namespace) -> int:
    del args
    header = ["NAME", "ARCH", "PARAMS", "QUANT", "SIZE", "KIND"]
    print(format_table(header, [_row(entry) for entry in list_models()]))
    return 0


COMMAND = Command("models", "List the bundled and shape-only models.", add_arguments, run)
