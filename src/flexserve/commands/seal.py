"""``flexserve seal``: seal a catalog model or a .gguf file into the model store."""

from __future__ import annotations

import argparse
from pathlib import Path

from flexserve.commands import Command
from flexserve.errors import ConfigError, ModelError
from flexserve.ui.units import human_bytes

_KIB = 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from flexserve.tee.sealing.format import DEFAULT_CHUNK_BYTES

    parser.add_argument("model", metavar="MODEL", help="catalog name or path of a .gguf file")
    parser.add_argument("--version", type=int, default=None, metavar="N",
                        help="model version for anti-rollback (default: the next one)")
    parser.add_argument("--out", type=Path, default=None, metavar="PATH",
                        help="write the sealed blob here instead of into the store")
    parser.add_argument("--chunk-kib", type=int, default=DEFAULT_CHUNK_BYTES // _KIB,
                        metavar="KIB",
                        help=f"AES-GCM chunk size in KiB (default: {DEFAULT_CHUNK_BYTES // _KIB})")


def run(args: argparse.Namespace) -> int:
    from flexserve.catalog import resolve
    from flexserve.tee.sealing.store import ModelStore, store_name
    from flexserve.ui.progress import ProgressBar

    entry = resolve(args.model)
    if entry.path is None:
        raise ModelError(f"{entry.name} is a shape-only model: it has no weights to seal")
    if args.version is not None and args.version < 0:
        raise ConfigError("--version must be >= 0")
    store = ModelStore.default()
    name = store_name(entry.name)
    with ProgressBar(f"sealing {name}", entry.size_bytes) as bar:
        result = store.seal(entry.path, name, args.version, chunk_bytes=args.chunk_kib * _KIB,
                            out_path=args.out, progress=bar.update)
    print(f"sealed {name} version {result.model_version}: {result.path}")
    print(f"size   {human_bytes(result.blob_bytes)} ({result.blob_bytes} bytes, "
          f"{result.n_units} units, {result.n_chunks} chunks)")
    print(f"sha256 {result.blob_sha256.hex()}")
    return 0


COMMAND = Command("seal", "Seal a model for this device into the model store.",
                  add_arguments, run)
