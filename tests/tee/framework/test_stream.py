"""Streamed generation in the framework TA: CMD_STREAM_BEGIN / NEXT / CANCEL.

One code path: CMD_GENERATE is BEGIN plus NEXT until the end inside the TA, so the text of a
stream equals the whole generation's for any step size; a cancelled stream leaves nothing
half-owned (no cache: every frame scrubbed and handed back; cache: checked in).
"""

from __future__ import annotations

import numpy as np
import pytest

from flexserve.errors import ConfigError
from flexserve.monitor.ledger import FrameState
from flexserve.nwos.tee_client import TeeClientError
from flexserve.soc.constants import MIB
from flexserve.soc.npu import NpuMode
from flexserve.systems.config import FLEXSERVE
from flexserve.systems.device import Device, FrameworkClient, boot_device
from flexserve.systems.schedule import time_request
from flexserve.tee.framework import FrameworkOptions, GenerateRequest
from flexserve.tee.gp import TeeResult
from flexserve.tee.sealing import ModelStore
from flexserve.timing.profile import load_profile

PROMPT = "Name three colours of the rainbow."
GREEDY = {"max_tokens": 12, "temperature": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """A small shared host: one torch thread is usually faster than two."""


def _open(store: ModelStore, cache_bytes: int = 0) -> tuple[Device, FrameworkClient]:
    device = boot_device(store.root, store.device, dram_bytes=512 * MIB,
                         options=FrameworkOptions(cache_bytes=cache_bytes))
    client = FrameworkClient(device)
    blob = store.latest("smollm2-135m")
    assert blob is not None
    client.open_model(blob.path.name)
    return device, client


@pytest.fixture(scope="module")
def cold(store):
    device, client = _open(store)
    yield device, client
    client.close()


def _flex_frames(device: Device) -> int:
    ledger = device.platform.monitor.ctx.ledger
    return int(np.count_nonzero(np.isin(ledger.state, [FrameState.FLEX_PROTECTED,
                                                       FrameState.FLEX_MAPPED])))


def _streamed(client: FrameworkClient, request: GenerateRequest, step: int) -> list:
    chunks = [client.stream_begin(request)]
    while chunks[-1].finish_reason is None:
        chunks.append(client.stream_next(step))
    return chunks


@pytest.mark.parametrize("step", [1, 5])
def test_streamed_text_equals_the_whole_generation(cold, step: int) -> None:
    device, client = cold
    request = GenerateRequest(PROMPT, sampling=GREEDY)
    whole = client.generate(request)
    chunks = _streamed(client, request, step)
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].finish_reason == whole.finish_reason
    assert chunks[-1].completion_tokens == whole.completion_tokens
    assert chunks[-1].prompt_tokens == whole.prompt_tokens
    assert [c.completion_tokens for c in chunks[:2]] == [1, 1 + min(step, 11)]
    assert all(c.finish_reason is None for c in chunks[:-1])
    trace = device.ta.last_trace
    assert trace is not None and trace.generated_tokens == whole.completion_tokens
    assert time_request(trace, FLEXSERVE, load_profile("rk3588")).ttft_s > 0


def test_a_cancelled_stream_frees_its_frames_and_the_npu(cold) -> None:
    device, client = cold
    idle_frames = _flex_frames(device)
    client.stream_begin(GenerateRequest(PROMPT, sampling={"max_tokens": 40}))
    client.stream_next(2)
    assert _flex_frames(device) > idle_frames  # the layers are in Flex-Mem meanwhile
    assert device.platform.soc.npu.mode is NpuMode.NORMAL  # given back between steps
    client.stream_cancel()
    assert _flex_frames(device) == idle_frames
    assert device.manager.lent_pages() == 0
    assert device.platform.soc.npu.mode is NpuMode.NORMAL
    assert device.ta.last_trace is not None and device.ta.last_trace.generated_tokens == 3
    client.stream_cancel()  # nothing running: nothing to do
    with pytest.raises(TeeClientError) as error:
        client.stream_next(1)
    assert error.value.result == TeeResult.ERROR_BAD_STATE


def test_one_stream_per_session(cold) -> None:
    _, client = cold
    request = GenerateRequest(PROMPT, sampling={"max_tokens": 8})
    client.stream_begin(request)
    for second in (client.stream_begin, client.generate):
        with pytest.raises(TeeClientError) as error:
            second(request)
        assert error.value.result == TeeResult.ERROR_BAD_STATE
    assert client.stream_next(64).finish_reason == "length"  # the first one is unharmed
    with pytest.raises(TeeClientError) as error:
        client.stream_next(0)
    assert error.value.result == TeeResult.ERROR_BAD_PARAMETERS


def test_closing_the_session_cancels_its_stream(store) -> None:
    device, client = _open(store)
    client.stream_begin(GenerateRequest(PROMPT, sampling={"max_tokens": 30}))
    client.close()
    assert device.manager.lent_pages() == 0
    assert device.platform.monitor.ctx.ledger.flex_frame_count() == 0


def test_a_cancelled_stream_is_checked_into_the_cache(store) -> None:
    device, client = _open(store, cache_bytes=256 * MIB)
    client.stream_begin(GenerateRequest(PROMPT, sampling={"max_tokens": 30}))
    client.stream_cancel()
    cache = device.ta.cache
    assert cache is not None and not cache.in_flight
    owned = device.platform.secure.port.owned_frames(device.owner).size
    assert owned == cache.resident_frames > 0  # every frame the TA holds is the cache's
    assert cache.kv is not None and len(cache.kv.entries) == 1  # the tokens so far
    client.close()


def test_messages_render_with_the_chat_template_inside_the_ta(cold) -> None:
    _, client = cold
    by_prompt = client.generate(GenerateRequest(PROMPT, system="Be brief.", sampling=GREEDY))
    by_messages = client.generate(GenerateRequest(messages=(
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}),
        sampling=GREEDY))
    assert by_messages == by_prompt
    longer = client.generate(GenerateRequest(messages=(
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": PROMPT}), sampling=GREEDY))
    assert longer.prompt_tokens > by_prompt.prompt_tokens - 10


BAD_MESSAGES = [
    [],
    "hello",
    [{"role": "user"}],
    [{"role": "robot", "content": "hi"}],
    [{"role": "user", "content": 3}],
    [{"role": "user", "content": "hi", "name": "x"}],
    [{"role": "user", "content": "hi"}, {"role": "system", "content": "late"}],
    [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "last"}],
    ["user: hi"],
]


@pytest.mark.parametrize("messages", BAD_MESSAGES)
def test_bad_messages_are_config_errors(messages) -> None:
    import json

    with pytest.raises(ConfigError):
        GenerateRequest.decode(json.dumps({"messages": messages}).encode())


@pytest.mark.parametrize("body", [
    b'{"messages": [{"role": "user", "content": "hi"}], "prompt": "also"}',
    b'{"prompt": "hi", "sampling": {"temperature": -1}}',
    b'{"prompt": "hi", "sampling": {"stop": "x"}}',
    b'{"prompt": "hi", "colour": "blue"}',
    b'{"prompt": 5}',
    b'[1, 2]',
])
def test_bad_requests_are_refused_by_the_ta(cold, body: bytes) -> None:
    device, client = cold
    with pytest.raises(ConfigError):
        GenerateRequest.decode(body)
    from flexserve.nwos.tee_client import ClientParam
    from flexserve.tee.framework import CMD_STREAM_BEGIN
    from flexserve.tee.gp import ParamType

    with pytest.raises(TeeClientError) as error:
        client.client.invoke(client.session, CMD_STREAM_BEGIN, [
            ClientParam(ParamType.MEMREF_INPUT, data=body),
            ClientParam(ParamType.MEMREF_OUTPUT, size_bytes=4096)])
    assert error.value.result == TeeResult.ERROR_BAD_PARAMETERS
    assert device.platform.monitor.ctx.ledger.flex_frame_count() == 0


def test_a_prompt_beyond_the_context_is_excess_data(cold) -> None:
    device, client = cold
    with pytest.raises(TeeClientError) as error:
        client.stream_begin(GenerateRequest(PROMPT, sampling={"max_tokens": 10_000_000}))
    assert error.value.result == TeeResult.ERROR_EXCESS_DATA
    assert device.platform.monitor.ctx.ledger.flex_frame_count() == 0
