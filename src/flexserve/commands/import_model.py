"""``flexserve import FILE.gguf``: seal a user's model into the device store, verified."""

from __future__ import annotations

import argparse
from pathlib import Path

from flexserve.commands import Command
from flexserve.ui.progress import ProgressBar


class _PhaseBars:
    """One progress bar per phase (sealing, verifying), each on its own line."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._bar: ProgressBar | None = None
        self._label = ""

    def callback(self, label: str):  # -> ProgressCallback
        def update(done_bytes: int, total_bytes: int) -> None:
            if self._label != label:
                self.close()
                self._bar, self._label = ProgressBar(f"{label} {self.name}", total_bytes), label
            assert self._bar is not None
            self._bar.update(done_bytes, total_bytes)
        return update

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.gguf", type=Path, help="the GGUF model to import")
    parser.add_argument("--name", default=None,
                        help="catalog name for the model (default: the file's stem)")
    parser.add_argument("--sha256", default=None, metavar="HEX",
                        help="the file's expected SHA-256; a mismatch imports nothing")
    parser.add_argument("--update", action="store_true",
                        help="seal a new version of a model already imported under NAME")


def run(args: argparse.Namespace) -> int:
    from flexserve.catalog.importer import default_import_name, import_model, parse_sha256
    from flexserve.tee.sealing.store import ModelStore
    from flexserve.ui.units import human_bytes

    expected = parse_sha256(args.sha256) if args.sha256 is not None else None
    name = args.name if args.name is not None else default_import_name(args.file)
    store = ModelStore.default()
    bars = _PhaseBars(name)
    try:
        result = import_model(store, args.file, name, expected_sha256=expected,
                              update=args.update, seal_progress=bars.callback("sealing  "),
                              verify_progress=bars.callback("verifying"))
    finally:
        bars.close()
    model = result.model
    print(f"imported {model.name} version {model.version}: {result.stored.path}")
    print(f"model    {model.architecture}, {model.n_layers} layers, {model.quantization}, "
          f"{human_bytes(model.size_bytes)}")
    print(f"sha256   {model.source_sha256} (source, verified through the sealed copy)")
    return 0


COMMAND = Command("import", "Seal a GGUF model into the device store (verified) under a name.",
                  add_arguments, run)
