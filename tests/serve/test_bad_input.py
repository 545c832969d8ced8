"""Bad requests get the right status and an OpenAI error object; the server keeps serving."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest
from tests.serve.conftest import MAX_BODY_BYTES

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def _chat(model: str, **fields) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            **fields}


def _error(body: bytes | dict) -> dict:
    parsed = json.loads(body) if isinstance(body, bytes) else body
    error = parsed["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


def test_invalid_json(ready) -> None:
    status, _, body = ready.request("POST", CHAT, b'{"model": "x", "messages": [')
    assert status == 400
    assert _error(body)["type"] == "invalid_request_error"


@pytest.mark.parametrize("drop", ["model", "messages"])
def test_missing_field(ready, drop: str) -> None:
    payload = _chat(ready.model)
    del payload[drop]
    status, body = ready.post_json(CHAT, payload)
    assert status == 400
    assert _error(body)["param"] == drop


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", "5"), ("temperature", "hot"), ("stream", "yes"), ("messages", "Hi"),
    ("seed", 1.5), ("stop", 7),
])
def test_wrong_type(ready, field: str, value) -> None:
    status, body = ready.post_json(CHAT, _chat(ready.model, **{field: value}))
    assert status == 400, body
    assert _error(body)["param"].split(".")[0] == field


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", 0), ("max_tokens", -3), ("max_completion_tokens", 0), ("temperature", -0.5),
    ("top_p", 0), ("top_p", 1.5), ("n", 2), ("seed", -1),
])
def test_out_of_range(ready, field: str, value) -> None:
    status, body = ready.post_json(CHAT, _chat(ready.model, **{field: value}))
    assert status == 400, body
    assert _error(body)["param"] == field


def test_bad_message_role(ready) -> None:
    payload = _chat(ready.model, messages=[{"role": "robot", "content": "Hi"}])
    status, body = ready.post_json(CHAT, payload)
    assert status == 400 and _error(body)["param"].startswith("messages")


@pytest.mark.parametrize(("path", "field", "payload"), [
    (COMPLETIONS, "prompt", {"prompt": "a\ud800b"}),
    (CHAT, "messages", {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "\udfff"}]}]}),
    (COMPLETIONS, "stop", {"prompt": "Hi", "stop": ["\ud800"]}),
])
def test_lone_surrogates_are_not_text(ready, path: str, field: str, payload: dict) -> None:
    raw = json.dumps({"model": ready.model, "max_tokens": 2, **payload}).encode()
    status, _, body = ready.request("POST", path, raw)
    assert status == 400
    assert _error(body)["param"] == field


@pytest.mark.parametrize("sampling", [
    {"temperature": 1e-300}, {"temperature": 1.0, "top_p": 1e-300},
    {"temperature": 2.0, "min_p": 0.999999}, {"temperature": 1.0, "repetition_penalty": 0.01},
])
def test_extreme_but_valid_sampling_values_are_served(ready, sampling: dict) -> None:
    status, body = ready.post_json(COMPLETIONS, {"model": ready.model, "prompt": "Hi",
                                                 "max_tokens": 2, **sampling})
    assert status == 200, body
    assert body["usage"]["completion_tokens"] >= 1


def test_unknown_model(ready) -> None:
    status, body = ready.post_json(COMPLETIONS, {"model": "gpt-9", "prompt": "Hi"})
    assert status == 404
    assert _error(body)["code"] == "model_not_found"


def test_a_path_is_not_a_model(ready) -> None:
    status, body = ready.post_json(COMPLETIONS, {"model": "/etc/passwd", "prompt": "Hi"})
    assert status == 404 and _error(body)["code"] == "model_not_found"


def test_prompt_longer_than_the_context(ready) -> None:
    prompt = "lorem ipsum dolor sit amet " * 6000  # about 30k tokens
    status, body = ready.post_json(COMPLETIONS, {"model": ready.model, "prompt": prompt,
                                                 "max_tokens": 1})
    assert status == 400, body
    assert _error(body)["code"] == "context_length_exceeded"


def test_prompt_plus_max_tokens_beyond_the_context(ready) -> None:
    status, body = ready.post_json(COMPLETIONS, {"model": ready.model, "prompt": "Hi",
                                                 "max_tokens": 10_000_000})
    assert status == 400
    assert _error(body)["code"] == "context_length_exceeded"


def _raw_post(server, headers: list[str], body: bytes) -> tuple[int, bytes]:
    """Send a request as raw bytes (the server may answer before the body is all sent)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    head = [f"POST {CHAT} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
            f"Authorization: Bearer {server.api_key}", "Connection: close", *headers]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        with contextlib.suppress(OSError):  # a closed connection: the answer came first
            sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_oversized_body_is_413_without_reading_it(ready) -> None:
    declared = 2 << 20
    status, body = _raw_post(ready, [f"Content-Length: {declared}"], b"{" * 1024)
    assert status == 413
    assert _error(body)["code"] == "request_too_large"


def test_oversized_chunked_body_is_413(ready) -> None:
    chunk = b"x" * 65536
    # exactly the limit, then the one byte that crosses it, and no end: the byte that makes the
    # server answer is the last one sent, so nothing is left unread (no reset races the answer)
    stream = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (MAX_BODY_BYTES // len(chunk))
    stream += b"1\r\nx\r\n"
    status, body = _raw_post(ready, ["Transfer-Encoding: chunked"], stream)
    assert status == 413
    assert _error(body)["code"] == "request_too_large"


def test_missing_or_wrong_api_key(ready) -> None:
    payload = json.dumps(_chat(ready.model)).encode()
    status, _, body = ready.request("POST", CHAT, payload, auth=False)
    assert status == 401 and _error(body)["type"] == "authentication_error"
    status, _, body = ready.request("GET", "/v1/models", auth=False,
                                    headers={"Authorization": "Bearer wrong"})
    assert status == 401
    assert ready.request("GET", "/health", auth=False)[0] == 200


def test_unknown_route_and_method(ready) -> None:
    status, _, body = ready.request("GET", "/v1/nothing-here")
    assert status == 404 and _error(body)
    status, _, body = ready.request("GET", CHAT)
    assert status == 405 and _error(body)


def test_still_serving_after_bad_input(ready) -> None:
    status, body = ready.post_json(CHAT, _chat(ready.model))
    assert status == 200
    assert body["choices"][0]["message"]["content"] is not None
    assert ready.metrics()['flexserve_requests_total{endpoint="chat",outcome="client_error"}'] > 0
