"""``flexserve models``: what the catalog knows, what the store holds, and what a server serves.

``flexserve models`` lists every model with its sealed versions in the store (STORE);
``--url URL`` also asks a running server and adds LOADED and CACHED (resident Flex-Mem bytes);
``flexserve models show NAME`` prints one model's details.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flexserve.catalog import CatalogEntry, list_models
from flexserve.catalog.bundled import BundledModel
from flexserve.catalog.server_state import ServedModel
from flexserve.commands import Command
from flexserve.ui.table import format_table
from flexserve.ui.units import human_bytes, human_params

HEADER = ["NAME", "ARCH", "PARAMS", "QUANT", "SIZE", "KIND", "STORE"]


def _store_cell(entry: CatalogEntry, store_root: Path) -> str:
    from flexserve.catalog.details import store_blobs

    if not entry.has_weights:
        return "-"
    blobs = store_blobs(entry, store_root)
    if not blobs:
        return "not sealed"
    versions = ",".join(f"v{b.version}" for b in blobs)
    return f"{versions} {human_bytes(sum(b.blob_bytes for b in blobs))}"


def _row(entry: CatalogEntry | BundledModel, store_root: Path) -> list[str]:
    if isinstance(entry, BundledModel):
        return [entry.name, "-", "-", "-", "-", f"bundled (not installed: {entry.package})", "-"]
    return [
        entry.name,
        entry.architecture,
        human_params(entry.params),
        entry.quantization,
        human_bytes(entry.size_bytes),
        entry.kind.value,
        _store_cell(entry, store_root),
    ]


def _served_cells(served: ServedModel | None) -> list[str]:
    if served is None:
        return ["-", "-"]
    return ["yes" if served.loaded else "no",
            human_bytes(served.resident_bytes) if served.resident_bytes else "-"]


def _list(args: argparse.Namespace, store_root: Path) -> int:
    entries = list_models(store_root)
    rows = [_row(entry, store_root) for entry in entries]
    if args.url is None:
        print(format_table(HEADER, rows))
        return 0
    from flexserve.catalog.server_state import fetch_served_models

    served = fetch_served_models(args.url, args.api_key)
    rows = [row + _served_cells(served.get(row[0])) for row in rows]
    known = {entry.name for entry in entries}
    rows += [[name, *["-"] * 4, "server only", "sealed" if s.sealed else "-",
              *_served_cells(s)] for name, s in served.items() if name not in known]
    print(format_table([*HEADER, "LOADED", "CACHED"], rows))
    return 0


def _show(name: str, store_root: Path) -> int:
    from flexserve.catalog import resolve
    from flexserve.catalog.details import model_details

    details = model_details(resolve(name, store_root), store_root)
    entry = details.entry
    lines = [
        ("name", entry.name), ("kind", entry.kind.value), ("architecture", entry.architecture),
        ("params", f"{human_params(entry.params)} ({entry.params})"),
        ("layers", str(entry.n_layers)), ("context", f"{details.context_length} tokens"),
        ("quantization", entry.quantization),
        ("size", f"{human_bytes(entry.size_bytes)} ({entry.size_bytes} bytes)"),
    ]
    if entry.path is not None:
        lines.append(("file", str(entry.path)))
    if details.sidecar is not None:
        side = details.sidecar
        lines += [("tensor types", ", ".join(side.tensor_types)),
                  ("source", side.source_file), ("source sha256", side.source_sha256),
                  ("imported", side.imported_at), ("imported version", str(side.version))]
    for blob in details.stored:
        lines.append((f"store v{blob.version}", f"{blob.path} ({human_bytes(blob.blob_bytes)})"))
    if entry.has_weights and not details.stored:
        lines.append(("store", "not sealed yet (sealed on first use)"))
    width = max(len(key) for key, _ in lines)
    print("\n".join(f"{key.ljust(width)}  {value}" for key, value in lines))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, metavar="URL",
                        help="also ask the server at URL (GET URL/v1/models): LOADED, CACHED")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="bearer token for --url")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    show = actions.add_parser("show", help="details of one model",
                              description="Details of one model: catalog facts and store.")
    show.add_argument("name", metavar="NAME")


def run(args: argparse.Namespace) -> int:
    from flexserve.tee.sealing.store import default_store_root

    store_root = default_store_root()
    if getattr(args, "action", None) == "show":
        return _show(args.name, store_root)
    return _list(args, store_root)


COMMAND = Command("models", "List the models: catalog, store and (with --url) a server.",
                  add_arguments, run)
