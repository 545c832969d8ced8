"""The device worker killed (SIGKILL) mid-request: the request fails clearly, the server stays
up, the worker restarts and the next request succeeds."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow

LONG_PROMPT = "1, 2, 3, 4, 5, 6, 7, 8,"  # greedy decoding counts on for hundreds of tokens


def _headers(server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_key}"}


def _kill_worker(server) -> int:
    pid = server.worker_pid()
    os.kill(pid, signal.SIGKILL)
    return pid


def test_stream_gets_an_error_event_and_the_server_recovers(ready) -> None:
    restarts_before = ready.health()[1]["worker"]["restarts"]
    body = {"model": ready.model, "prompt": LONG_PROMPT, "max_tokens": 400,
            "temperature": 0, "stream": True}
    events: list[dict] = []
    killed = None
    with (httpx.Client(base_url=ready.base_url, headers=_headers(ready), timeout=120) as client,
          client.stream("POST", "/v1/completions", json=body) as response):
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line[len("data: "):]))
            if killed is None and len(events) >= 2:
                killed = _kill_worker(ready)
    assert killed is not None
    error = events[-1]["error"]
    assert error["code"] == "worker_died" and error["type"] == "server_error"
    assert ready.process.poll() is None
    health = ready.wait_ready()
    assert health["worker"]["pid"] != killed
    assert health["worker"]["restarts"] == restarts_before + 1
    status, answer = ready.post_json("/v1/completions", {"model": ready.model, "prompt": "Hi",
                                                         "max_tokens": 3, "temperature": 0})
    assert status == 200 and answer["usage"]["completion_tokens"] >= 1
    assert ready.metrics()["flexserve_worker_restarts_total"] == restarts_before + 1


def test_non_streaming_request_gets_a_500(ready) -> None:
    result: dict = {}

    def call() -> None:
        result["reply"] = ready.post_json("/v1/completions", {
            "model": ready.model, "prompt": LONG_PROMPT, "max_tokens": 400,
            "temperature": 0})

    caller = threading.Thread(target=call)
    caller.start()
    assert _wait_running(ready)
    killed = _kill_worker(ready)
    caller.join(timeout=120)
    status, body = result["reply"]
    assert status == 500
    assert body["error"]["code"] == "worker_died"
    assert ready.wait_ready()["worker"]["pid"] != killed
    status, _ = ready.post_json("/v1/completions", {"model": ready.model, "prompt": "Hi",
                                                    "max_tokens": 2})
    assert status == 200


def _wait_running(server, timeout_s: float = 60.0) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.metrics().get("flexserve_running_requests", 0) >= 1:
            return True
        time.sleep(0.05)
    return False
