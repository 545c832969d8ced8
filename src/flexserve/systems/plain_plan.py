"""The trace of an unprotected run (NW-Base alone): layer sizes of the plaintext GGUF."""

from __future__ import annotations

from pathlib import Path

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layer_groups import EMBED_GROUP, layer_groups
from flexserve.systems.shape_plan import layer_trace
from flexserve.tee.framework.trace import RequestTrace, Stage, StageKind


def plain_trace(path: Path, prompt_tokens: int, generated_tokens: int) -> RequestTrace:
    gguf = GGUFFile.open(path)
    groups = layer_groups(gguf)
    layers = [layer_trace(g.name, i, g.n_bytes, g.name != EMBED_GROUP)
              for i, g in enumerate(groups)]
    return RequestTrace(path.stem, ModelConfig.from_gguf(gguf), layers,
                        init_stages=[Stage(StageKind.INIT, "meta")],
                        prompt_tokens=prompt_tokens, generated_tokens=generated_tokens)
