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
from flexserve.errors import PermissionFault
from flexserve.soc.constants import MIB
from flexserve.systems.device import boot_device
from flexserve.tee.framework.files import ServiceBlobReader
from flexserve.tee.framework.frames import read_back
from flexserve.tee.framework.memory import FlexMemPool, TzascPool
from flexserve.tee.framework.meter import WorkMeter
from flexserve.tee.framework.pipeline import LayerLoader
from flexserve.tee.framework.trace import StageKind
from flexserve.tee.sealing import SealedModel


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """A small shared host: one torch thread is usually faster than two."""

def _load_two_blocks(device, store, smollm2_path: Path, pool):
    """Load blk.0 and blk.1 through ``pool``; check bytes, stages and the installed weights."""
    port = device.platform.secure.port
    blob = store.latest("smollm2-135m")
    assert blob is not None
    reader = ServiceBlobReader(device.files, port, blob.path.name)
    sealed = SealedModel.open(reader, store.device.keys, store.device.rollback)
    groups = sealed.layer_groups(sealed.meta_gguf(reader))
    plain = GGUFFile.open(smollm2_path)
    transformer = Transformer(ModelConfig.from_gguf(plain))
    meter = WorkMeter({"monitor": lambda: device.manager.work,
                       "kernel": lambda: device.kernel.work})
    loader = LayerLoader(pool, sealed, reader, meter)
    for unit, group in list(zip(sealed.weight_units, groups, strict=True))[1:3]:
        trace = loader.load(unit, group, transformer)
        alloc = trace.stage(StageKind.ALLOC)
        assert alloc is not None and alloc.pages == -(-unit.n_bytes // 4096)
        assert [s.kind for s in trace.stages] == [StageKind.ALLOC, StageKind.IO,
                                                   StageKind.DECRYPT]
    expected = load_group(groups[1], group_bytes(plain, groups[1]))
    block = transformer.blocks[0]
    assert block is not None
    assert torch.equal(block.attn_norm, expected["blk.0.attn_norm.weight"])
    return plain, groups


def test_layers_decrypt_into_flex_mem_and_weights_come_from_them(store, smollm2_path) -> None:
    device = boot_device(store.root, store.device, dram_bytes=384 * MIB)
    port, services = device.platform.secure.port, device.ta.services
    pool = FlexMemPool(services)
    plain, groups = _load_two_blocks(device, store, smollm2_path, pool)
    for allocation, group in zip(pool.allocations, groups[1:3], strict=True):
        held = read_back(port, services.owner, allocation.frames, group.n_bytes)
        assert held.tobytes() == group_bytes(plain, group)
    owned = port.owned_frames(services.owner)
    assert owned.size == pool.frames > 0
    pool.release_all()
    assert port.owned_frames(services.owner).size == 0
    assert device.manager.lent_pages() == 0
    assert device.platform.soc.memory.frames_are_zero(np.asarray(owned))


@pytest.mark.parametrize("upfront", [False, True])
def test_layers_decrypt_into_one_tzasc_region(store, smollm2_path, upfront: bool) -> None:
    device = boot_device(store.root, store.device, dram_bytes=384 * MIB, cma_bytes=64 * MIB)
    port, services = device.platform.secure.port, device.ta.services
    tzasc = device.platform.soc.tzasc
    pool = TzascPool(services, upfront_bytes=32 * MIB if upfront else None)
    plain, groups = _load_two_blocks(device, store, smollm2_path, pool)
    region = next(r for r in tzasc.regions[1:] if r is not None)  # slot 0 is the TEE's
    assert region.base_frame == pool.region.base_frame and region.frame_count == pool.frames
    # whole 4 MiB CMA blocks: two 2.2 MB layers grow a one-block region to two blocks
    assert pool.frames * 4096 == (32 * MIB if upfront else 8 * MIB)
    first = region.base_frame
    for group in groups[1:3]:  # packed back to back, page-aligned
        pages = -(-group.n_bytes // 4096)
        held = port.tzasc_read_frames(first, pages).reshape(-1)[:group.n_bytes]
        assert held.tobytes() == group_bytes(plain, group)
        first += pages
    frames = np.arange(region.base_frame, region.end_frame)
    with pytest.raises(PermissionFault):  # the normal world cannot read it, mapped or not
        device.platform.normal.cpu.read(int(frames[0]) * 4096, 16)
    pool.release_all()
    assert all(r is None for r in tzasc.regions[1:])
    assert device.contig is not None and device.contig.lent_pages() == 0
    assert device.platform.soc.memory.frames_are_zero(frames)


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


@pytest.mark.parametrize(("weight_format", "max_diff"), [("float32", 1e-3), ("int4", 1.0)])
def test_a_reused_kv_prefix_gives_the_logits_of_a_full_prefill(smollm2_path: Path,
                                                               weight_format: str,
                                                               max_diff: float) -> None:
    """Exact in float32; with int4 the suffix's few rows take torch's int4 kernel while a long
    prefill takes the bf16 path, so logits move within the format's own error."""
    from flexserve.engine.loader import load_model
    from flexserve.tee.framework.prefill import StreamedPrefill

    loaded = load_model(smollm2_path, weight_format=weight_format)
    ids = loaded.tokenizer.encode("A conversation's earlier turns are reused: " * 6)

    def logits(prefix=None, reused: int = 0) -> torch.Tensor:
        prefill = StreamedPrefill(loaded.transformer, ids, len(ids) + 2, prefix, reused)
        for group in loaded.groups:
            prefill.run_group(group.name)
        return prefill, prefill.logits.reshape(-1)

    full_prefill, full = logits()
    kv = full_prefill.cache.export_bytes(len(ids))
    _, reused = logits((kv, len(ids)), len(ids) - 1)
    assert float((full - reused).abs().max()) < max_diff
    assert int(full.argmax()) == int(reused.argmax())
