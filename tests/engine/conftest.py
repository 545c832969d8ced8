"""Engine test setup: helper modules on the import path, shared parsed model files.

The model paths come from the ``smollm2_path`` / ``gemma3_path`` fixtures of
``tests/conftest.py`` (they skip cleanly when a model package is not installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def smollm2_gguf(smollm2_path: Path):
    from flexserve.engine.gguf_file import GGUFFile

    return GGUFFile.open(smollm2_path)


@pytest.fixture(scope="session")
def gemma3_gguf(gemma3_path: Path):
    from flexserve.engine.gguf_file import GGUFFile

    return GGUFFile.open(gemma3_path)
