"""tests/catalog helpers (``tiny_gguf``) on the import path, and a private FLEXSERVE_HOME."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh FLEXSERVE_HOME: the CLI's default store and secure storage live under it."""
    path = tmp_path / "fxhome"
    monkeypatch.setenv("FLEXSERVE_HOME", str(path))
    return path


@pytest.fixture
def store(home: Path):
    from flexserve.tee.sealing.store import ModelStore

    return ModelStore.default()
