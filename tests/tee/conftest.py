"""tests/tee helpers (``tee_world``) on the import path, and a store with SmolLM2 sealed."""

import sys
from pathlib import Path

import pytest

from flexserve.tee.sealing import ModelStore, SecureDevice

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="module")
def store(tmp_path_factory, smollm2_path: Path) -> ModelStore:
    """A model store in a fresh home with the bundled SmolLM2 sealed into it."""
    home = tmp_path_factory.mktemp("home")
    store = ModelStore(home / "store", SecureDevice.load_or_create(home / "secure"))
    store.ensure_sealed("smollm2-135m", smollm2_path)
    return store
