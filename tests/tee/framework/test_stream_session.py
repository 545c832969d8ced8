"""DeviceSession streaming, its virtual device clock, and idle time reaching on-demand
protection."""

from __future__ import annotations

import pytest

from flexserve.engine.sampling import SamplingParams
from flexserve.errors import ConfigError, ContextOverflowError
from flexserve.monitor.status import SmcStatus
from flexserve.soc.constants import MIB
from flexserve.systems import pricing
from flexserve.systems.config import FLEXSERVE
from flexserve.systems.runner import Prompt
from flexserve.systems.session import DeviceSession
from flexserve.tee.framework import GenerateRequest
from flexserve.tee.sealing import ModelStore, SecureDevice
from flexserve.timing.profile import load_profile

MODEL = "smollm2-135m"
PROMPT = "Write one sentence about the sea."
GREEDY = {"max_tokens": 10, "temperature": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """A small shared host: one torch thread is usually faster than two."""


@pytest.fixture(scope="module")
def store(tmp_path_factory, smollm2_path) -> ModelStore:
    home = tmp_path_factory.mktemp("home")
    store = ModelStore(home / "store", SecureDevice.load_or_create(home / "secure"))
    store.ensure_catalog(MODEL)
    return store


def _session(store: ModelStore, cache_bytes: int = 256 * MIB) -> DeviceSession:
    return DeviceSession(FLEXSERVE, load_profile("rk3588"), store=store,
                         cache_bytes=cache_bytes, dram_bytes=1024 * MIB)


def test_a_stream_gives_the_text_and_device_times_of_a_whole_generation(store) -> None:
    with _session(store) as session:
        stream = session.stream(MODEL, GenerateRequest(PROMPT, sampling=GREEDY), step_tokens=3)
        chunks = list(stream)
        clock_after_stream = session.clock_s
    with _session(store) as fresh:
        whole = fresh.generate(MODEL, Prompt(PROMPT), SamplingParams(**GREEDY))
    assert stream.reply is not None
    assert "".join(c.text for c in chunks) == whole.answer.text == stream.reply.answer.text
    assert [c.completion_tokens for c in chunks] == [1, 4, 7, 10]
    assert chunks[0].device_elapsed_s == pytest.approx(stream.ttft_s)
    assert stream.ttft_s == pytest.approx(whole.timing.ttft_s)
    elapsed = [c.device_elapsed_s for c in chunks]
    assert elapsed == sorted(elapsed) and elapsed[0] < elapsed[-1]
    trace = stream.reply.trace
    assert trace.shape is not None
    decode_s = pricing.decode_s(trace.shape, trace.prompt_tokens, 9, FLEXSERVE,
                                load_profile("rk3588"))
    assert elapsed[-1] == pytest.approx(stream.ttft_s + decode_s)
    assert clock_after_stream == pytest.approx(elapsed[-1])
    assert stream.reply.timing.decode_tokens_per_s == pytest.approx(
        whole.timing.decode_tokens_per_s)
    assert fresh.clock_s == pytest.approx(clock_after_stream)


def test_cancel_checks_the_request_in_and_the_model_streams_again(store) -> None:
    with _session(store) as session:
        stream = session.stream(MODEL, GenerateRequest(PROMPT, sampling={"max_tokens": 50}))
        with pytest.raises(ConfigError, match="already streaming"):
            session.stream(MODEL, GenerateRequest(PROMPT))
        stream.step()
        stream.cancel()
        stream.cancel()  # idempotent
        assert stream.reply is not None and stream.reply.answer.finish_reason == "cancelled"
        assert stream.reply.answer.completion_tokens == 5
        cache = session.device.ta.cache
        assert cache is not None and not cache.in_flight
        assert session.resident_bytes(MODEL) > 0
        again = session.stream(MODEL, GenerateRequest(PROMPT, sampling=GREEDY))
        assert list(again)[-1].finish_reason == "length"
        assert session.streaming == 0


def test_tee_refusals_come_back_as_errors(store) -> None:
    with _session(store, cache_bytes=0) as session:
        with pytest.raises(ContextOverflowError):
            session.stream(MODEL, GenerateRequest(PROMPT, sampling={"max_tokens": 1 << 30}))
        with pytest.raises(ConfigError):
            session.stream(MODEL, GenerateRequest(PROMPT, sampling={"top_p": 7}))
        assert session.streaming == 0
        assert session.device.platform.monitor.ctx.ledger.flex_frame_count() == 0


def test_idle_time_advances_the_clock_and_reaches_on_demand_protection(store) -> None:
    with _session(store) as session:
        window_s = session.idle.window_s
        first = session.generate(MODEL, Prompt(PROMPT), SamplingParams(**GREEDY))
        before = session.clock_s
        assert session.advance_idle(window_s / 2) is None  # below the window: not asked
        assert session.clock_s == pytest.approx(before + window_s / 2)
        # the cache keeps weights in Flex-Mem: stage-2 must stay on
        assert session.advance_idle(window_s / 2) is SmcStatus.BUSY
        assert session.idle.stage2_enabled
        session.device.ta.cache.release_all()  # e.g. the normal world reclaimed it all
        assert session.advance_idle(window_s / 2) is None  # one attempt per window
        assert session.advance_idle(window_s / 2) is SmcStatus.SUCCESS
        assert not session.idle.stage2_enabled
        assert session.idle.counters.disabled == 1
        # the next request's Flex-Mem allocation verifies the EL2 region and turns it back on
        again = session.generate(MODEL, Prompt(PROMPT), SamplingParams(**GREEDY))
        assert session.idle.stage2_enabled
        assert again.answer.text == first.answer.text
        assert session.advance_idle(window_s / 2) is None  # idleness restarted at the request
