"""The event-stream response on its own: a client that stops reading, one that goes away."""

from __future__ import annotations

import asyncio
import time

from flexserve.serve.sse import DONE, EventStreamResponse, StreamEnd, encode_event


async def _events(count: int):
    for i in range(count):
        yield {"i": i}
    yield DONE


def _run(send, receive, count: int = 3, timeout_s: float = 0.2) -> tuple[StreamEnd, float]:
    ends: list[StreamEnd] = []

    async def on_end(end: StreamEnd) -> None:
        ends.append(end)

    async def main() -> float:
        start_s = time.perf_counter()
        await EventStreamResponse(_events(count), timeout_s, on_end)({}, receive, send)
        return time.perf_counter() - start_s

    elapsed_s = asyncio.run(main())
    assert len(ends) == 1
    return ends[0], elapsed_s


async def _never_disconnect() -> dict:
    await asyncio.Event().wait()
    return {}


def test_complete_stream_is_data_lines_then_done() -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    end, _ = _run(send, _never_disconnect)
    assert end is StreamEnd.COMPLETE
    bodies = b"".join(m.get("body", b"") for m in sent[1:])
    assert bodies == b"".join(encode_event(e) for e in ({"i": 0}, {"i": 1}, {"i": 2}, DONE))
    assert sent[0]["status"] == 200 and sent[-1]["more_body"] is False


def test_a_client_that_stops_reading_times_out() -> None:
    writes = 0

    async def stalled_send(message: dict) -> None:
        nonlocal writes
        if message["type"] == "http.response.body":
            writes += 1
            if writes == 2:  # the transport never drains again
                await asyncio.Event().wait()

    end, elapsed_s = _run(stalled_send, _never_disconnect, count=100, timeout_s=0.2)
    assert end is StreamEnd.SEND_TIMEOUT
    assert 0.2 <= elapsed_s < 2.0
    assert writes == 2


def test_a_client_that_goes_away_ends_the_stream() -> None:
    async def send(message: dict) -> None:
        await asyncio.sleep(0.01)

    async def receive() -> dict:
        await asyncio.sleep(0.05)
        return {"type": "http.disconnect"}

    end, elapsed_s = _run(send, receive, count=10_000, timeout_s=5)
    assert end is StreamEnd.DISCONNECTED
    assert elapsed_s < 2.0
