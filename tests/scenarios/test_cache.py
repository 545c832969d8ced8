"""Weights cached in Flex-Mem across requests, and cooperative reclamation, with real models.

One emulated phone serves SmolLM2 and Gemma 3 270M in turn. The second request of a model
computes from resident weights (no allocation, no flash, no decryption) and gives the same
text; an app's memory demand makes the normal world call ``rsmem_reclaim``, which takes the
idle model's last layers (scrubbed before the normal world sees them) and never the layers of
the request in flight; generation after a reclaim equals generation without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flexserve.engine.matrix import WeightFormat
from flexserve.engine.sampling import SamplingParams
from flexserve.nwos.page import PageKind
from flexserve.soc.constants import MIB
from flexserve.systems.config import FLEXSERVE
from flexserve.systems.runner import Prompt
from flexserve.systems.session import DeviceSession
from flexserve.tee.sealing import ModelStore, SecureDevice
from flexserve.timing.profile import load_profile

GREEDY = SamplingParams(temperature=0.0, max_tokens=8)
QUESTION = Prompt("Name three colors.")
STORY = Prompt("Once upon a time", raw=True)


@pytest.fixture(scope="module")
def store(tmp_path_factory, smollm2_path: Path, gemma3_path: Path, one_torch_thread):
    root = tmp_path_factory.mktemp("cache")
    return ModelStore(root / "store", SecureDevice.load_or_create(root / "secure"))


def _session(store: ModelStore) -> DeviceSession:
    """Exact float32 weights: a reused KV prefix then gives bit-for-bit a cold run's text
    (with int4 kernels the rounding depends on how many rows a prefill computes)."""
    return DeviceSession(FLEXSERVE, load_profile("rk3588"), store=store, cache_bytes=512 * MIB,
                         dram_bytes=1024 * MIB, weight_format=WeightFormat.FLOAT32)


@pytest.fixture(scope="module")
def session(store):
    with _session(store) as s:
        yield s


@pytest.fixture(scope="module")
def cold(session):
    """The first request of each model: everything restored from flash."""
    return {"smollm2-135m": session.generate("smollm2-135m", QUESTION, GREEDY),
            "gemma3-270m": session.generate("gemma3-270m", STORY, GREEDY)}


def test_a_warm_request_computes_from_resident_weights(session, cold) -> None:
    warm = session.generate("smollm2-135m", QUESTION, GREEDY)
    assert warm.answer == cold["smollm2-135m"].answer
    assert all(layer.resident for layer in warm.trace.layers)
    assert not cold["smollm2-135m"].trace.layers[0].resident
    assert warm.timing.ttft_s < cold["smollm2-135m"].timing.ttft_s / 10
    assert warm.timing.breakdown.get("io", 0.0) == 0.0 == warm.timing.breakdown.get("alloc")
    cache = session.device.ta.cache
    assert cache.counters.layer_hits >= len(warm.trace.layers)
    assert set(cache.models) == {m.name for m in cache.models.values()}


def _squeeze(session, leave_free_pages: int):
    """An app takes all but ``leave_free_pages`` free pages, as a phone app would."""
    kernel = session.device.kernel
    app = kernel.spawn_app("camera")
    kernel.alloc(app.app_id, PageKind.ANON, kernel.available_pages(PageKind.ANON)
                 - leave_free_pages)
    return app


def test_reclaim_takes_the_idle_models_last_layers_and_text_is_unchanged(session, cold):
    cache = session.device.ta.cache
    services = session.device.ta.services
    memory = session.device.platform.soc.memory
    dirty: list[bool] = []
    surrender = services.surrender_secure

    def spy(allocation):
        pages = surrender(allocation)
        dirty.append(not memory.frames_are_zero(allocation.frames))
        return pages

    services.surrender_secure = spy  # type: ignore[method-assign]
    try:
        session.generate("gemma3-270m", STORY, GREEDY)  # both models above the 25% rate
        session.generate("smollm2-135m", QUESTION, GREEDY)  # SmolLM2 most recent, Gemma idle
        gemma_blob = next(n for n in cache.models if n.startswith("gemma3"))
        before = dict(cache.models[gemma_blob].layers)
        requests = cache.counters.reclaim_requests
        app = _squeeze(session, leave_free_pages=0)  # needs ~40 MiB from the secure side
        assert cache.counters.reclaim_requests > requests and cache.counters.bytes_reclaimed
        after = cache.models[gemma_blob].layers if gemma_blob in cache.models else {}
        lost = [name for name in before if name not in after]
        assert lost and lost == list(before)[-len(lost):]  # the last layers went first
        assert dirty and not any(dirty)
        assert cache.cap_bytes <= cache.resident_bytes
        session.device.kernel.kill(app)
        again = session.generate("gemma3-270m", STORY, GREEDY)
        assert again.answer == cold["gemma3-270m"].answer
        restored = [layer.name for layer in again.trace.layers if not layer.resident]
        assert restored == lost
    finally:
        services.surrender_secure = surrender  # type: ignore[method-assign]


def test_a_request_in_flight_keeps_its_layers_under_reclaim(store, cold) -> None:
    with _session(store) as session:
        session.generate("gemma3-270m", STORY, GREEDY)  # resident, then idle
        cache = session.device.ta.cache
        files = session.device.files
        read = files.read
        squeezed: list[object] = []

        def read_then_squeeze(name: str, offset: int, size_bytes: int):
            buffer = read(name, offset, size_bytes)
            if not squeezed and "smollm2" in name and offset > 60 * MIB:
                squeezed.append(_squeeze(session, leave_free_pages=0))  # mid-request
            return buffer

        files.read = read_then_squeeze  # type: ignore[method-assign]
        try:
            reply = session.generate("smollm2-135m", QUESTION, GREEDY)  # cold: reads flash
        finally:
            files.read = read  # type: ignore[method-assign]
        assert len(squeezed) == 1, "the pressure did not happen during the request"
        assert cache.counters.reclaim_requests >= 1 and cache.counters.bytes_reclaimed > 0
        assert reply.answer == cold["smollm2-135m"].answer
        smol = next(m for n, m in cache.models.items() if n.startswith("smollm2"))
        assert len(smol.layers) == len(smol.layer_names)  # the in-flight model kept all
        frames = np.concatenate([a.frames for a in smol.layers.values()])
        owned = session.device.platform.secure.port.owned_frames(session.device.owner)
        assert np.isin(frames, owned).all()


def test_a_conversation_reuses_its_kv_cache_even_after_it_was_written_back(store) -> None:
    from flexserve.systems.config import STRAWMAN_OPT

    turn1 = "The history of the Roman Empire begins"
    with _session(store) as session, DeviceSession(
            STRAWMAN_OPT, load_profile("rk3588"), store=store, dram_bytes=1024 * MIB,
            weight_format=WeightFormat.FLOAT32) as cold:
        first = session.generate("smollm2-135m", Prompt(turn1, raw=True), GREEDY)
        turn2 = turn1 + first.answer.text + " Later, the empire"
        second = session.generate("smollm2-135m", Prompt(turn2, raw=True), GREEDY)
        assert second.trace.reused_prompt_tokens >= first.trace.prompt_tokens
        assert second.trace.kv_restored_bytes == 0
        assert second.answer == cold.generate("smollm2-135m", Prompt(turn2, raw=True),
                                              GREEDY).answer
        cache = session.device.ta.cache
        cache.reclaim(cache.resident_bytes)  # everything: the KV cache is written back
        assert cache.counters.bytes_written_back > 0 and not cache.kv.resident_frames
        turn3 = turn2 + second.answer.text + " Then"
        third = session.generate("smollm2-135m", Prompt(turn3, raw=True), GREEDY)
        assert third.trace.kv_restored_bytes > 0
        assert third.trace.reused_prompt_tokens >= second.trace.prompt_tokens
        assert third.answer == cold.generate("smollm2-135m", Prompt(turn3, raw=True),
                                             GREEDY).answer
