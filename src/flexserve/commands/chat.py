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


def _read_line(interactive: bool) -> str | None:
    try:
        return input("> ") if interactive else sys.stdin.readline() or None
    except EOFError:
        return None


def _fresh(system: str | None) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}] if system else []


def run(args: argparse.Namespace) -> int:
    from flexserve.engine.chat_template import ChatTemplate

    params = sampling_params(args)
    loaded = load_for_generation(args.model)
    template = ChatTemplate.from_metadata(loaded.gguf.metadata)
    interactive = sys.stdin.isatty()
    if interactive:
        print(HELP_TEXT, file=sys.stderr)
    messages = _fresh(args.system)
    while (line := _read_line(interactive)) is not None:
        text = line.strip()
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            messages = _fresh(args.system)
            continue
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        reply = _ReplyCapture(sys.stdout)
        try:
            stats = _reply(loaded, template, messages, params, reply)
        except ContextOverflowError as exc:
            messages.pop()
            print(f"flexserve: {exc}; /reset starts a new conversation", file=sys.stderr)
            continue
        print()
        print(stats.summary(), file=sys.stderr)
        messages.append({"role": "assistant", "content": reply.text})
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
