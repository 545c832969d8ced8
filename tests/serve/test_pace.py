"""``--pace`` on a device slower than this host: chunks wait for the modeled device.

A second server runs a copy of the RK3588 profile whose decode bandwidths are 20x lower
(about 4 device tokens/s for SmolLM2, slower than the host), so pacing is observable: the paced
stream takes at least the modeled device time, which an unpaced one on this host would not.
The same server shows ``/health`` at 503 while its device boots.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from flexserve.timing.profile import PROFILES_DIR

pytestmark = pytest.mark.slow

SLOWDOWN = 20
TOKENS = 8


def _slow_profile(directory: Path) -> Path:
    text = (PROFILES_DIR / "rk3588.toml").read_text()
    text = text.replace('name = "rk3588"', 'name = "rk3588-slow"', 1)

    def slower(match: re.Match) -> str:
        return f"{match.group(1)}{float(match.group(2)) / SLOWDOWN:.6e}"

    text, count = re.subn(r"^(decode_bytes_per_s = \{ value = )([0-9.e+-]+)", slower, text,
                          flags=re.MULTILINE)
    assert count == 2
    path = directory / "rk3588-slow.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def paced_server(tmp_path_factory, server_factory):
    home = tmp_path_factory.mktemp("flexserve-paced")
    server = server_factory(home, "--pace", "--profile", str(_slow_profile(home)))
    yield server
    server.stop()


def test_health_is_503_while_the_device_boots(paced_server) -> None:
    assert 503 in paced_server.boot_statuses
    assert paced_server.boot_statuses[-1] == 200


def test_paced_stream_takes_the_modeled_device_time(paced_server) -> None:
    body = {"model": paced_server.model, "prompt": "1, 2, 3, 4, 5,", "max_tokens": TOKENS,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    paced_server.post_json("/v1/completions", {**body, "stream": False, "max_tokens": 1})
    start_s = time.perf_counter()
    status, _, raw = paced_server.request("POST", "/v1/completions", json.dumps(body).encode())
    host_s = time.perf_counter() - start_s
    assert status == 200
    chunks = [json.loads(line[6:]) for line in raw.decode().splitlines()
              if line.startswith("data: {")]
    extension = chunks[-1]["flexserve"]
    assert extension["paced"] is True and extension["profile"] == "rk3588-slow"
    device = extension["device"]
    tokens = chunks[-1]["usage"]["completion_tokens"]
    device_s = device["ttft_s"] + (tokens - 1) / device["decode_tokens_per_s"]
    worker_s = extension["host"]["worker_ttft_s"] + (tokens - 1) / extension["host"][
        "decode_tokens_per_s"]
    assert worker_s < 0.7 * device_s  # the host alone would be faster: pacing is visible
    assert host_s >= 0.95 * device_s
    assert extension["host"]["total_s"] >= 0.95 * device_s
