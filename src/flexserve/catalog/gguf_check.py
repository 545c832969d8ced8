"""Is a user's file a GGUF model the engine can serve? Checked before anything is sealed.

A file passes if it parses as GGUF, its architecture and hyper-parameters make a
:class:`ModelConfig`, every tensor's GGML type can be decoded, its tensors form the engine's
layer groups, it carries a usable tokenizer, and the bytes between and after its tensors are
zero (a sealed blob stores tensors, not padding, so only then does the blob rebuild the file
exactly; every GGUF writer pads with zeros). What passes comes back as public facts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from flexserve.engine.gguf_file import GGUFFile
from flexserve.errors import FlexServeError, ModelFormatError, ModelNotFoundError

_SCAN_BYTES = 1 << 20


@dataclass(frozen=True)
class GGUFFacts:
    """What may be said of a model in the normal world (no weights, no tokenizer)."""

    architecture: str
    params: int
    quantization: str
    tensor_types: tuple[str, ...]
    n_layers: int
    context_length: int
    size_bytes: int


def quantization_label(metadata: dict) -> str:
    """``general.file_type`` as llama.cpp names it (``Q4_1``, ``Q8_0``, ``F16``, ..)."""
    import gguf

    file_type = metadata.get("general.file_type")
    if file_type is None:
        return "unknown"
    try:
        return gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except ValueError:
        return f"file_type {file_type}"


def _check_types(gguf_file: GGUFFile) -> tuple[str, ...]:
    from flexserve.engine.ggml_types import type_name
    from flexserve.engine.quant import SUPPORTED_TYPES

    bad = sorted({type_name(t.ggml_type) for t in gguf_file.tensors.values()
                  if t.ggml_type not in SUPPORTED_TYPES})
    if bad:
        raise ModelFormatError(f"the engine cannot decode tensor type(s) {', '.join(bad)}")
    return tuple(sorted({type_name(t.ggml_type) for t in gguf_file.tensors.values()}))


def _nonzero(path: Path, start_bytes: int, end_bytes: int) -> bool:
    with path.open("rb") as handle:
        handle.seek(start_bytes)
        remaining = end_bytes - start_bytes
        while remaining > 0:
            piece = handle.read(min(remaining, _SCAN_BYTES))
            if not piece:
                return False
            if piece.count(0) != len(piece):
                return True
            remaining -= len(piece)
    return False


def _check_padding(gguf_file: GGUFFile, path: Path) -> None:
    """The gaps between tensors and after the last one must be zero."""
    spans = sorted((t.offset_bytes, t.offset_bytes + t.n_bytes) for t in gguf_file.tensors.values())
    edges = [gguf_file.data_offset_bytes, *itertools.chain.from_iterable(spans),
             gguf_file.n_bytes]
    for start, end in zip(edges[0::2], edges[1::2], strict=True):
        if end > start and _nonzero(path, start, end):
            raise ModelFormatError(
                f"non-zero padding in bytes {start}..{end}: a sealed copy could not rebuild it")


def _facts(gguf_file: GGUFFile, path: Path) -> GGUFFacts:
    from flexserve.engine.config import ModelConfig
    from flexserve.engine.layer_groups import layer_groups
    from flexserve.engine.tokenizer import Tokenizer

    config = ModelConfig.from_gguf(gguf_file)
    types = _check_types(gguf_file)
    layer_groups(gguf_file)
    Tokenizer.from_metadata(gguf_file.metadata)
    _check_padding(gguf_file, path)
    return GGUFFacts(
        architecture=config.architecture,
        params=sum(math.prod(t.shape) for t in gguf_file.tensors.values()),
        quantization=quantization_label(gguf_file.metadata),
        tensor_types=types,
        n_layers=config.n_layers,
        context_length=config.context_length,
        size_bytes=path.stat().st_size,
    )


def check_importable(path: Path) -> GGUFFacts:
    """The file's public facts, or a one-line ModelError saying why it cannot be served."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotFoundError(f"no such model file: {path}")
    try:
        with GGUFFile.open(path) as gguf_file:
            return _facts(gguf_file, path)
    except ModelNotFoundError:
        raise
    except FlexServeError as exc:
        raise ModelFormatError(f"cannot import {path.name}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot import {path.name}: not a readable GGUF file "
                               f"({exc})") from exc
