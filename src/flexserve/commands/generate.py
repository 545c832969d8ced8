"""``flexserve generate PROMPT``: one answer from a model on the host engine."""

from __future__ import annotations

import argparse
import sys

from flexserve.commands import Command
from flexserve.commands._engine import load_for_generation, stream_reply
from flexserve.commands._options import add_model_option, add_sampling_options, sampling_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="the prompt text ('-' reads it from stdin)")
    add_model_option(parser)
    add_sampling_options(parser)
    parser.add_argument("--raw", action="store_true",
                        help="complete the text as is, without the model's chat template "
                             "(the default for models whose GGUF has no chat template)")
    parser.add_argument("--system", default=None, help="system message for the chat template")
    parser.add_argument("--quiet", "-q", action="store_true", help="no statistics on stderr")


CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


def _messages(prompt: str, system: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}]


def prompt_ids(loaded, prompt: str, raw: bool, system: str | None = None) -> list[int]:
    """Token ids for a prompt: raw text, or rendered through the model's chat template."""
    from flexserve.engine.chat_template import ChatTemplate

    if raw or CHAT_TEMPLATE_KEY not in loaded.gguf.metadata:
        return loaded.tokenizer.encode(prompt)
    template = ChatTemplate.from_metadata(loaded.gguf.metadata)
    text = template.render(_messages(prompt, system), add_generation_prompt=True)
    return loaded.tokenizer.encode_prompt(text)


def run(args: argparse.Namespace) -> int:
    params = sampling_params(args)  # validate before the slow load
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    loaded = load_for_generation(args.model)
    if not args.raw and CHAT_TEMPLATE_KEY not in loaded.gguf.metadata and not args.quiet:
        print("note: this model has no chat template (a base model); completing the raw text",
              file=sys.stderr)
    ids = prompt_ids(loaded, prompt, args.raw, args.system)
    stats = stream_reply(loaded, ids, params)
    print()
    if not args.quiet:
        print(stats.summary(), file=sys.stderr)
    return 0


COMMAND = Command("generate", "Generate an answer to one prompt.", add_arguments, run)
