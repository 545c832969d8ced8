"""Write a workflow as TOML that :func:`flexserve.workflow.load.parse_workflow` reads back equal.

``tomllib`` only reads, so this is a small writer for the one schema we have: strings, integers
and arrays of strings.
"""

from __future__ import annotations

import json

from flexserve.workflow.spec import LlmCall, Workflow


def dump_workflow(workflow: Workflow) -> str:
    """The TOML text of ``workflow`` (optional keys at their defaults are left out)."""
    lines = [f"name = {_string(workflow.name)}"]
    if workflow.description:
        lines.append(f"description = {_string(workflow.description)}")
    for call in workflow.calls:
        lines.extend(["", "[[calls]]", *_call_lines(call)])
    return "\n".join(lines) + "\n"


def _call_lines(call: LlmCall) -> list[str]:
    lines = [f"name = {_string(call.name)}", f"model = {_string(call.model)}"]
    if call.prompt:
        lines.append(f"prompt = {_string(call.prompt)}")
    lines.append(f"output_tokens = {call.output_tokens}")
    if call.deps:
        lines.append(f"deps = [{', '.join(_string(dep) for dep in call.deps)}]")
    if call.prompt_tokens is not None:
        lines.append(f"prompt_tokens = {call.prompt_tokens}")
    return lines


def _string(text: str) -> str:
    """A TOML basic string. JSON's escapes are valid TOML; TOML also forbids a raw DEL."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
