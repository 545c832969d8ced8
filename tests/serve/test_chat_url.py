"""``flexserve chat --url``: a conversation with the live server, history kept between turns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flexserve.serve.remote_chat import RemoteChat

pytestmark = pytest.mark.slow


def test_remote_chat_keeps_the_history(ready, local_chat_text) -> None:
    import io

    chat = RemoteChat(ready.base_url, ready.model, {"max_tokens": 12, "temperature": 0},
                      ready.api_key)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    out = io.StringIO()
    reply = chat.reply(messages, out)
    assert reply.text == local_chat_text("What is the capital of France?", 12)
    assert reply.text.strip() and out.getvalue() == reply.text
    assert reply.usage["completion_tokens"] >= 1 and reply.timings["device"]["ttft_s"] > 0
    messages += [{"role": "assistant", "content": reply.text},
                 {"role": "user", "content": "And of Italy?"}]
    second = chat.reply(messages, io.StringIO())
    assert second.usage["prompt_tokens"] > reply.usage["prompt_tokens"]


def test_chat_command_over_the_api(ready, local_chat_text) -> None:
    env = {**os.environ, "FLEXSERVE_API_KEY": ready.api_key}
    result = subprocess.run(
        [sys.executable, "-m", "flexserve.cli", "chat", "--url", ready.base_url,
         "--max-tokens", "12"],
        input="What is the capital of France?\n/exit\n", capture_output=True, text=True,
        env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == local_chat_text("What is the capital of France?", 12) + "\n"
    assert "device TTFT" in result.stderr


def test_chat_command_reports_a_wrong_key(ready) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flexserve.cli", "chat", "--url", ready.base_url,
         "--api-key", "wrong"], input="Hi\n", capture_output=True, text=True, timeout=120,
        check=False)
    assert result.returncode == 2
    assert "HTTP 401" in result.stderr
