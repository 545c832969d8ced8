"""Starting ``flexserve serve`` as a child process on a free port and waiting until it is ready
(for ``flexserve bench serve`` without ``--url``)."""

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
from contextlib import contextmanager
from pathlib import Path

from flexserve.errors import FlexServeError

READY_TIMEOUT_S = 600.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def health(base_url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def wait_ready(base_url: str, process: subprocess.Popen | None = None,
               timeout_s: float = READY_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise FlexServeError(f"the server exited with status {process.returncode}")
        try:
            status, body = health(base_url)
            if status == 200:
                return body
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.25)
    raise FlexServeError(f"the server at {base_url} was not ready within {timeout_s:.0f} s")


@contextmanager
def spawned_server(options: list[str], log_path: Path | None = None) -> Iterator[str]:
    """A ``flexserve serve`` child with ``options`` (plus a free ``--port``); yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "flexserve.cli", "serve", "--port", str(port), *options]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, process)
        yield base_url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log_path:
            log.close()
