"""Load: concurrent streams, a burst beyond the queue, clients that go away."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow

LONG_PROMPT = "1, 2, 3, 4, 5, 6, 7, 8,"  # greedy decoding counts on for hundreds of tokens
COUNTING = [LONG_PROMPT, "2, 4, 6, 8,", "10, 20, 30,", "a, b, c, d,"]
PROMPTS = ["The sky is", "Water boils at", "My name is", "The best fruit is"]
CLIENTS = 16
TOKENS = 12


def _client(server, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=300,
                             headers={"Authorization": f"Bearer {server.api_key}"},
                             limits=httpx.Limits(max_connections=200), **kwargs)


def _body(server, prompt: str, stream: bool, max_tokens: int = TOKENS) -> dict:
    return {"model": server.model, "prompt": prompt, "max_tokens": max_tokens,
            "temperature": 0, "stream": stream}


async def _stream_text(client: httpx.AsyncClient, body: dict) -> str:
    parts: list[str] = []
    async with client.stream("POST", "/v1/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[len("data: "):])
                assert "error" not in chunk, chunk
                parts.extend(choice["text"] for choice in chunk["choices"])
    return "".join(parts)


def _idle(server) -> dict[str, float]:
    metrics = server.metrics()
    return {key: metrics[key] for key in (
        "flexserve_running_requests", "flexserve_queue_length",
        "flexserve_worker_running_requests", "flexserve_worker_queued_requests")}


def _frames(server) -> dict[str, float]:
    return {k: v for k, v in server.metrics().items() if k.startswith("flexserve_flexmem_frames")}


def _wait_until(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_concurrent_streams_match_single_requests(ready) -> None:
    async def main() -> tuple[dict[str, str], list[tuple[str, str]]]:
        async with _client(ready) as client:
            alone = {}
            for prompt in PROMPTS:
                response = await client.post("/v1/completions", json=_body(ready, prompt, False))
                alone[prompt] = response.json()["choices"][0]["text"]
            prompts = [PROMPTS[i % len(PROMPTS)] for i in range(CLIENTS)]
            texts = await asyncio.gather(*(_stream_text(client, _body(ready, p, True))
                                           for p in prompts))
            return alone, list(zip(prompts, texts, strict=True))

    alone, together = asyncio.run(main())
    assert all(alone.values())
    for prompt, text in together:
        assert text == alone[prompt]
    assert _wait_until(lambda: set(_idle(ready).values()) == {0.0})


def test_burst_beyond_the_queue_gets_immediate_503(ready) -> None:
    burst = 3 * 16

    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, float, str | None]:
        start_s = time.monotonic()
        response = await client.post("/v1/completions",
                                     json=_body(ready, f"Count to {i}:", False, max_tokens=2))
        return response.status_code, time.monotonic() - start_s, response.headers.get(
            "retry-after")

    async def main() -> list[tuple[int, float, str | None]]:
        async with _client(ready) as client:
            return await asyncio.gather(*(one(client, i) for i in range(burst)))

    results = asyncio.run(main())
    rejected = [r for r in results if r[0] == 503]
    assert rejected, results
    assert {r[0] for r in results} <= {200, 503}
    assert all(r[2] is not None and int(r[2]) >= 1 for r in rejected)
    slowest_ok_s = max(r[1] for r in results if r[0] == 200)
    assert max(r[1] for r in rejected) < min(2.0, slowest_ok_s)
    metrics = ready.metrics()
    assert metrics['flexserve_requests_total{endpoint="completions",outcome="rejected"}'] >= len(
        rejected)
    assert _wait_until(lambda: set(_idle(ready).values()) == {0.0})


def _warm(server) -> dict[str, float]:
    """Frames after one short request: the model's resident weights and that request's KV
    (the device keeps the last request's KV for reuse, so a baseline needs a fixed request)."""
    status, _ = server.post_json("/v1/completions", _body(server, "Warm up", False, 2))
    assert status == 200
    assert _wait_until(lambda: set(_idle(server).values()) == {0.0})
    return _frames(server)


def test_disconnecting_clients_free_their_resources(ready) -> None:
    baseline = _warm(ready)
    cancelled_key = 'flexserve_requests_total{endpoint="completions",outcome="cancelled"}'
    cancelled_before = ready.metrics().get(cancelled_key, 0.0)

    async def leave_early(client: httpx.AsyncClient, prompt: str) -> None:
        body = _body(ready, prompt, True, max_tokens=400)
        async with client.stream("POST", "/v1/completions", json=body) as response:
            assert response.status_code == 200
            seen = 0
            async for line in response.aiter_lines():
                seen += line.startswith("data: ")
                if seen >= 2:
                    break  # closing the stream here drops the connection

    async def main() -> None:
        for prompt in COUNTING:  # a fresh connection each: closing it is the disconnect
            async with _client(ready) as client:
                await leave_early(client, prompt)

    asyncio.run(main())
    assert _wait_until(lambda: set(_idle(ready).values()) == {0.0}, timeout_s=30)
    assert _warm(ready) == baseline
    assert ready.metrics()[cancelled_key] >= cancelled_before + len(COUNTING)


def test_non_streaming_client_that_leaves_is_cancelled(ready) -> None:
    cancelled_key = 'flexserve_requests_total{endpoint="completions",outcome="cancelled"}'
    before = ready.metrics().get(cancelled_key, 0.0)

    async def main() -> None:
        async with _client(ready) as client:
            request = asyncio.ensure_future(client.post(
                "/v1/completions", json=_body(ready, LONG_PROMPT, False, 400)))
            await asyncio.to_thread(_wait_until, lambda: _idle(ready)[
                "flexserve_worker_running_requests"] >= 1)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request

    asyncio.run(main())
    assert _wait_until(lambda: ready.metrics().get(cancelled_key, 0.0) >= before + 1)
    assert _wait_until(lambda: set(_idle(ready).values()) == {0.0})
