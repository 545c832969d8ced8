"""The official openai SDK, unchanged, against the live server: chat, completions, streaming
with usage, model listing, and the flexserve extension fields."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m"  # the model live_server preloads
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _check_timings(extension: dict) -> None:
    assert extension["system"] == "flexserve"
    assert extension["profile"] == "rk3588"
    assert extension["host"]["ttft_s"] > 0
    assert extension["host"]["total_s"] >= extension["host"]["ttft_s"]
    device = extension["device"]
    assert device["ttft_s"] > 0
    assert device["decode_tokens_per_s"] > 0
    assert device["breakdown_s"] and all(v >= 0 for v in device["breakdown_s"].values())


def test_chat_completion(openai_client, ready, local_chat_text) -> None:
    reply = openai_client.chat.completions.create(model=MODEL, messages=QUESTION,
                                                  max_tokens=12, temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == local_chat_text(QUESTION[0]["content"], 12)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 5
    assert reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    _check_timings(reply.model_extra["flexserve"])


def test_completion_hits_the_token_limit(openai_client, ready) -> None:
    reply = openai_client.completions.create(model=MODEL, prompt="Once upon a time",
                                             max_tokens=5, temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].text.strip()


def test_streaming_chat_with_usage_matches_the_whole_answer(openai_client, ready) -> None:
    whole = openai_client.chat.completions.create(model=MODEL, messages=QUESTION,
                                                  max_completion_tokens=10, temperature=0)
    stream = openai_client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_completion_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == whole.choices[0].finish_reason and set(finish[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens == whole.usage.completion_tokens
    _check_timings(last.model_extra["flexserve"])


def test_streaming_completion_without_usage(openai_client, ready) -> None:
    chunks = list(openai_client.completions.create(model=MODEL, prompt="1, 2, 3,",
                                                   max_tokens=4, temperature=0, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)
    _check_timings(chunks[-1].model_extra["flexserve"])


def test_stop_string_ends_with_stop(openai_client, ready) -> None:
    free = openai_client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12,
                                            temperature=0).choices[0].text
    stop = free.strip()[:1]
    assert stop, free
    reply = openai_client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12,
                                             temperature=0, stop=[stop])
    assert reply.choices[0].finish_reason == "stop"
    assert stop not in reply.choices[0].text
    assert free.startswith(reply.choices[0].text)


def test_seed_makes_sampling_repeatable(openai_client, ready) -> None:
    def sample(seed: int) -> str:
        return openai_client.completions.create(
            model=MODEL, prompt="My favourite animal is", max_tokens=8, temperature=1.2,
            top_p=0.95, seed=seed).choices[0].text

    first = sample(11)
    assert sample(11) == first
    assert any(sample(seed) != first for seed in (12, 13))


def test_model_listing(openai_client, ready) -> None:
    models = {m.id: m for m in openai_client.models.list()}
    assert MODEL in models
    extension = models[MODEL].model_extra["flexserve"]
    assert extension["loaded"] is True and extension["sealed"] is True
    assert extension["resident_bytes"] >= 0
    one = openai_client.models.retrieve(MODEL)
    assert one.id == MODEL and one.owned_by == "flexserve"


def test_unknown_model_is_not_found(openai_client, ready) -> None:
    import openai

    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.chat.completions.create(model="no-such-model", messages=QUESTION)
    assert raised.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        openai_client.models.retrieve("no-such-model")
