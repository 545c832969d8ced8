"""``flexserve chat``: an interactive conversation through the model's chat template."""

from __future__ import annotations

import argparse
import sys

from flexserve.commands import Command
from flexserve.commands._engine import ReplyStats, load_for_generation, stream_reply
from flexserve.commands._options import add_model_option, add_sampling_options, sampling_params
from flexserve.errors import ContextOverflowError

HELP_TEXT = "commands: /reset clears the conversation, /exit (or Ctrl-D) leaves"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_option(parser)
    add_sampling_options(parser, max_tokens=256)
    parser.add_argument("--system", default=None, help="system message for the conversation")
    parser.add_argument("--url", default=None,
                        help="chat with a running `flexserve serve` at this URL instead of "
                             "loading the model here (e.g. http://127.0.0.1:8000)")
    parser.add_argument("--api-key", default=None,
                        help="API key of the server (default: $FLEXSERVE_API_KEY)")


def _read_line(interactive: bool) -> str | None:
    try:
        return input("> ") if interactive else sys.stdin.readline() or None
    except EOFError:
        return None


def _fresh(system: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}] if system else []


def run(args: argparse.Namespace) -> int:
    params = sampling_params(args)
    if args.url:
        return _converse(_remote_replier(args, params), args.system)
    from flexserve.engine.chat_template import ChatTemplate

    loaded = load_for_generation(args.model)
    template = ChatTemplate.from_metadata(loaded.gguf.metadata)

    def local(messages: list[dict[str, str]]) -> tuple[str, str]:
        reply = _ReplyCapture(sys.stdout)
        stats = _reply(loaded, template, messages, params, reply)
        return reply.text, stats.summary()

    return _converse(local, args.system)


def _remote_replier(args: argparse.Namespace, params):
    import os

    from flexserve.serve.remote_chat import RemoteChat

    sampling = {"max_tokens": params.max_tokens, "temperature": params.temperature,
                "top_p": params.top_p, "seed": params.seed, "stop": list(params.stop) or None}
    if params.top_k:
        sampling["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        sampling["repetition_penalty"] = params.repetition_penalty
    api_key = args.api_key or os.environ.get("FLEXSERVE_API_KEY")
    chat = RemoteChat(args.url, args.model, sampling, api_key)

    def remote(messages: list[dict[str, str]]) -> tuple[str, str]:
        reply = chat.reply(messages, sys.stdout)
        return reply.text, reply.summary()

    return remote


def _converse(replier, system: str | None) -> int:
    """The conversation loop; ``replier(messages)`` streams a reply, returns (text, summary)."""
    interactive = sys.stdin.isatty()
    if interactive:
        print(HELP_TEXT, file=sys.stderr)
    messages = _fresh(system)
    while (line := _read_line(interactive)) is not None:
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            messages = _fresh(system)
            continue
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        try:
            text_out, summary = replier(messages)
        except ContextOverflowError as exc:
            messages.pop()
            print(f"flexserve: {exc}; /reset starts a new conversation", file=sys.stderr)
            continue
        print()
        print(summary, file=sys.stderr)
        messages.append({"role": "assistant", "content": text_out})
    return 0


def _reply(loaded, template, messages: list[dict[str, str]], params, out) -> ReplyStats:
    rendered = template.render(messages, add_generation_prompt=True)
    return stream_reply(loaded, loaded.tokenizer.encode_prompt(rendered), params, out)


class _ReplyCapture:
    """Writes through to the terminal and keeps the text for the conversation history."""

    def __init__(self, out) -> None:
        self._out = out
        self._parts: list[str] = []

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._out.write(text)

    def flush(self) -> None:
        self._out.flush()

    @property
    def text(self) -> str:
        return "".join(self._parts)


COMMAND = Command("chat", "Chat with a model interactively.", add_arguments, run)
