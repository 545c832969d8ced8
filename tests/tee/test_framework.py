"""The framework TA's per-layer pipeline: plaintext lands in Flex-Mem frames and the engine
builds its weights from those frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flexserve.engine.config import ModelConfig
from flexserve.engine.gguf_file import GGUFFile
from flexserve.engine.layers import group_bytes, load_group
from flexserve.engine.model import Transformer
from flexserve.soc.constants import MIB
from flexserve.systems.device import boot_device
from flexserve.systems.shape_plan import protect_record
from flexserve.tee.framework.files import ServiceBlobReader
from flexserve.tee.framework.frames import read_back
from flexserve.tee.framework.meter import WorkMeter
from flexserve.tee.framework.pipeline import LayerLoader, LayerSet
from flexserve.tee.framework.trace import StageKind
from flexserve.tee.sealing import ModelStore, SealedModel, SecureDevice


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """A small shared host: one torch thread is usually faster than two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

@pytest.fixture(scope="module")
def store(tmp_path_factory, smollm2_path: Path) -> ModelStore:
    home = tmp_path_factory.mktemp("home")
    store = ModelStore(home / "store", SecureDevice.load_or_create(home / "secure"))
    store.ensure_sealed("smollm2-135m", smollm2_path)
    return store


def test_layers_decrypt_into_frames_and_weights_come_from_them(store, smollm2_path) -> None:
    device = boot_device(store.root, store.device, dram_bytes=384 * MIB)
    port, services = device.platform.secure.port, device.ta.services
    blob = store.latest("smollm2-135m")
    assert blob is not None
    reader = ServiceBlobReader(device.files, port, blob.path.name)
    sealed = SealedModel.open(reader, store.device.keys, store.device.rollback)
    groups = sealed.layer_groups(sealed.meta_gguf(reader))
    plain = GGUFFile.open(smollm2_path)
    transformer = Transformer(ModelConfig.from_gguf(plain))
    meter = WorkMeter({"monitor": lambda: device.manager.work})
    loader = LayerLoader(services, sealed, reader, meter)
    layers = LayerSet(services)
    for unit, group in list(zip(sealed.weight_units, groups, strict=True))[1:3]:
        trace = loader.load(unit, group, transformer, layers)
        held = read_back(port, services.owner, layers.allocations[-1].frames, unit.n_bytes)
        assert held.tobytes() == group_bytes(plain, group)
        alloc = trace.stage(StageKind.ALLOC)
        assert alloc is not None and alloc.pages == -(-unit.n_bytes // 4096)
        assert alloc.work["monitor"] == protect_record(alloc.pages)
        assert [s.kind for s in trace.stages] == [StageKind.ALLOC, StageKind.IO,
                                                   StageKind.DECRYPT]
    expected = load_group(groups[1], group_bytes(plain, groups[1]))
    block = transformer.blocks[0]
    assert block is not None
    assert torch.equal(block.attn_norm, expected["blk.0.attn_norm.weight"])
    owned = port.owned_frames(services.owner)
    assert owned.size == layers.frames > 0
    layers.release_all()
    assert port.owned_frames(services.owner).size == 0
    assert device.manager.lent_pages() == 0
    assert device.platform.soc.memory.frames_are_zero(np.asarray(owned))


def test_streamed_prefill_gives_the_logits_of_a_whole_forward(smollm2_path: Path) -> None:
    from flexserve.engine.loader import load_model
    from flexserve.tee.framework.prefill import PrefilledModel, StreamedPrefill

    loaded = load_model(smollm2_path)
    ids = loaded.tokenizer.encode("The secure world computes layer by layer.")
    prefill = StreamedPrefill(loaded.transformer, ids, capacity_tokens=len(ids) + 4)
    did_matmul = [prefill.run_group(group.name) for group in loaded.groups]
    assert did_matmul == [False] + [True] * (len(loaded.groups) - 1)
    whole = loaded.transformer.forward(ids, loaded.transformer.new_cache(len(ids) + 4),
                                       last_only=True)
    assert prefill.logits is not None
    torch.testing.assert_close(prefill.logits.reshape(-1), whole.reshape(-1), rtol=0, atol=0)
    model = PrefilledModel(prefill)
    assert model.forward(ids, model.new_cache(len(ids) + 4)) is prefill.logits
