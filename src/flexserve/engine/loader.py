"""Load a GGUF model file into a ready-to-run transformer and its tokenizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layers import LayerGroup, group_bytes, layer_groups, load_group
from flexserve.engine.matrix import DEFAULT_WEIGHT_FORMAT, WeightFormat
from flexserve.engine.model import Transformer

ProgressCallback = Callable[[int, int], None]


@dataclass
class LoadedModel:
    """Everything needed to generate from one model file."""

    gguf: GGUFFile
    config: ModelConfig
    tokenizer: Any  # flexserve.engine.tokenizer.Tokenizer
    transformer: Transformer
    groups: list[LayerGroup]

    @property
    def path(self) -> Path | None:
        return self.gguf.path


def build_transformer(
    gguf: GGUFFile, config: ModelConfig, groups: list[LayerGroup],
    progress: ProgressCallback | None = None,
    weight_format: WeightFormat | str = DEFAULT_WEIGHT_FORMAT,
) -> Transformer:
    """A transformer with every group installed from its blob, in ``weight_format``."""
    transformer = Transformer(config, weight_format)
    for done, group in enumerate(groups, start=1):
        weights = load_group(group, group_bytes(gguf, group), transformer.weight_format)
        gguf.drop_resident_pages()
        transformer.install_group(group.name, weights)
        if progress is not None:
            progress(done, len(groups))
    return transformer


def load_tokenizer(gguf: GGUFFile) -> Any:
    from flexserve.engine.tokenizer import Tokenizer

    return Tokenizer.from_metadata(gguf.metadata)


def load_model(
    path: str | Path, progress: ProgressCallback | None = None,
    weight_format: WeightFormat | str = DEFAULT_WEIGHT_FORMAT,
) -> LoadedModel:
    """Parse ``path``, build its config and tokenizer, and install all weight groups.

    ``progress(done_groups, total_groups)`` is called after each group is installed;
    ``weight_format`` picks exact float32 or fast int4 weights (see :mod:`matrix`).
    """
    gguf = GGUFFile.open(path)
    config = ModelConfig.from_gguf(gguf)
    tokenizer = load_tokenizer(gguf)
    groups = layer_groups(gguf)
    transformer = build_transformer(gguf, config, groups, progress, weight_format)
    return LoadedModel(gguf, config, tokenizer, transformer, groups)
