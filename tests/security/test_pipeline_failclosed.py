"""A sealed model tampered on flash mid-pipeline: the request stops with one generic
security error, and every frame decrypted so far is scrubbed and handed back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flexserve.monitor.ledger import FrameState
from flexserve.monitor.smc_ids import FunctionId
from flexserve.nwos.tee_client import TeeClientError
from flexserve.soc.constants import MIB
from flexserve.soc.npu import NpuMode
from flexserve.systems.device import FrameworkClient, boot_device
from flexserve.tee.framework import GenerateRequest
from flexserve.tee.gp import TeeResult
from flexserve.tee.sealing import FileBlobReader, ModelStore, SealedModel, SecureDevice


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """A small shared host: one torch thread is usually faster than two."""

@pytest.fixture
def store(tmp_path: Path, smollm2_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "store", SecureDevice.load_or_create(tmp_path / "secure"))
    store.ensure_sealed("smollm2-135m", smollm2_path)
    return store


def _chunk_offset(store: ModelStore, path: Path, unit: str) -> int:
    with FileBlobReader(path) as reader:  # the test's shortcut to where a layer's bytes are
        sealed = SealedModel.open(reader, store.device.keys, store.device.rollback,
                                  install=False)
        chunks = sealed.unit(unit).chunks
        return chunks[len(chunks) // 2].file_offset_bytes + 100


@pytest.mark.parametrize("unit", ["embed", "blk.5"])
def test_tampered_chunk_fails_closed_and_scrubs_everything(store: ModelStore, unit: str) -> None:
    blob = store.latest("smollm2-135m")
    assert blob is not None
    device = boot_device(store.root, store.device, dram_bytes=384 * MIB)
    client = FrameworkClient(device)
    client.open_model(blob.path.name)  # header, manifest and index verify: tamper afterwards
    offset = _chunk_offset(store, blob.path, unit)
    attacker = device.platform.normal
    byte = attacker.storage.read_range(blob.path.name, offset, 1)
    attacker.storage.write_range(blob.path.name, offset, bytes([byte[0] ^ 0x01]))

    handed_out: list[np.ndarray] = []
    returned_dirty: list[bool] = []
    services = device.ta.services
    alloc, free = services.alloc_secure, services.free_secure
    memory = device.platform.soc.memory

    def spy_alloc(size_bytes: int):
        allocation = alloc(size_bytes)
        handed_out.append(allocation.frames.copy())
        return allocation

    def spy_free(allocation) -> None:
        free(allocation)  # scrubbed and back in the normal world: check before any reuse
        returned_dirty.append(not memory.frames_are_zero(allocation.frames))

    services.alloc_secure = spy_alloc  # type: ignore[method-assign]
    services.free_secure = spy_free  # type: ignore[method-assign]
    errors = []
    for _ in range(2):  # the same answer every time
        with pytest.raises(TeeClientError) as caught:
            client.generate(GenerateRequest("Tell me a secret.", sampling={"max_tokens": 4}))
        errors.append((caught.value.result, str(caught.value)))
    assert errors[0] == errors[1]
    assert errors[0][0] == TeeResult.ERROR_SECURITY

    trace = device.ta.last_trace
    assert trace is not None and trace.layers[-1].name == unit
    frames = np.concatenate(handed_out)
    assert frames.size >= sum(layer.plaintext_bytes for layer in trace.layers) // 4096
    port = device.platform.secure.port
    assert port.owned_frames(services.owner).size == 0
    assert device.manager.lent_pages() == 0
    ledger = device.platform.monitor.ctx.ledger
    assert ledger.states_are(frames, FrameState.NORMAL)
    assert len(returned_dirty) == len(handed_out) and not any(returned_dirty)
    status = attacker.smc_checked(FunctionId.FLEXNPU_STATUS).values[0]
    assert status == NpuMode.NORMAL
    client.close()
    assert device.tos.open_sessions == 0


@pytest.mark.parametrize("upfront", [False, True], ids=["grown", "whole"])
def test_strawman_tzasc_region_fails_closed_and_is_scrubbed(store: ModelStore,
                                                            upfront: bool) -> None:
    """The strawman designs decrypt into one TZASC region; tampering scrubs and frees it."""
    from flexserve.tee.framework import FrameworkOptions
    from flexserve.tee.framework.memory import SecureMemoryKind

    blob = store.latest("smollm2-135m")
    assert blob is not None
    options = FrameworkOptions(use_npu=False, memory=SecureMemoryKind.TZASC,
                               alloc_upfront=upfront, pipeline=not upfront)
    device = boot_device(store.root, store.device, dram_bytes=512 * MIB, options=options,
                         cma_bytes=192 * MIB)
    client = FrameworkClient(device)
    client.open_model(blob.path.name)
    offset = _chunk_offset(store, blob.path, "blk.7")
    attacker = device.platform.normal
    byte = attacker.storage.read_range(blob.path.name, offset, 1)
    attacker.storage.write_range(blob.path.name, offset, bytes([byte[0] ^ 0x80]))

    regions: list[tuple[int, int]] = []
    services = device.ta.services
    free = services.free_contiguous

    def spy_free(allocation) -> None:
        regions.append((allocation.base_frame, allocation.frame_count))
        free(allocation)

    services.free_contiguous = spy_free  # type: ignore[method-assign]
    with pytest.raises(TeeClientError) as caught:
        client.generate(GenerateRequest("Tell me a secret.", sampling={"max_tokens": 4}))
    assert caught.value.result == TeeResult.ERROR_SECURITY
    assert len(regions) == 1
    base, count = regions[0]
    frames = np.arange(base, base + count)
    assert device.platform.soc.tzasc.regions[1:] == [None] * 7
    assert device.contig is not None and device.contig.lent_pages() == 0
    assert device.platform.soc.memory.frames_are_zero(frames)
    ledger = device.platform.monitor.ctx.ledger
    assert ledger.states_are(frames, FrameState.NORMAL)
    client.close()
