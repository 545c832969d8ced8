"""Read a workflow from TOML.

Schema (every key other than those listed is an error, so typos do not pass silently)::

    name = "router"                  # required, non-empty string
    description = "..."              # optional string, default ""

    [[calls]]                        # one table per LLM call, at least one
    name = "classify"                # required identifier, unique in the workflow
    model = "qwen3-0.6b"             # required catalog name (or .gguf path)
    prompt = "Classify: {rewrite}"   # optional text; {dep} is a dependency's output
    output_tokens = 8                # required integer >= 1
    deps = ["rewrite"]               # optional list of call names, default []
    prompt_tokens = 200              # optional integer >= 1 (timing-only prompt length)

A call needs ``prompt`` or ``prompt_tokens`` (or both). Semantic checks (dependencies exist,
no cycles, placeholders name dependencies) are :class:`~flexserve.workflow.spec.Workflow`'s.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flexserve.errors import ConfigError
from flexserve.workflow.spec import LlmCall, Workflow

_WORKFLOW_KEYS = {"name": str, "description": str, "calls": list}
_CALL_KEYS = {"name": str, "model": str, "prompt": str, "output_tokens": int, "deps": list,
              "prompt_tokens": int}
_REQUIRED_WORKFLOW = ("name", "calls")
_REQUIRED_CALL = ("name", "model", "output_tokens")


def load_workflow(path: str | Path) -> Workflow:
    """Parse and validate the workflow file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"workflow file {file} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read workflow file {file}: {exc}") from exc
    return parse_workflow(text, source=str(file))


def parse_workflow(text: str, source: str = "<string>") -> Workflow:
    """Parse and validate workflow TOML text; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc
    return workflow_from_dict(data, source)


def workflow_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Workflow:
    """A workflow from the parsed-TOML form described in this module's docstring."""
    _check_table(data, _WORKFLOW_KEYS, _REQUIRED_WORKFLOW, source)
    calls = []
    for index, table in enumerate(data["calls"]):
        where = f"{source}: calls[{index}]"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table")
        calls.append(_call_from_table(table, where))
    try:
        return Workflow(data["name"], data.get("description", ""), tuple(calls))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _call_from_table(table: Mapping[str, Any], where: str) -> LlmCall:
    _check_table(table, _CALL_KEYS, _REQUIRED_CALL, where)
    deps = table.get("deps", [])
    if not all(isinstance(dep, str) for dep in deps):
        raise ConfigError(f"{where}: deps must be a list of strings")
    try:
        return LlmCall(table["name"], table["model"], table.get("prompt", ""),
                       table["output_tokens"], tuple(deps), table.get("prompt_tokens"))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_table(table: Mapping[str, Any], types: Mapping[str, type],
                 required: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(types))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(types)}")
    for key in required:
        if key not in table:
            raise ConfigError(f"{where}: missing required key {key!r}")
    for key, value in table.items():
        expected = types[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ConfigError(f"{where}: {key} must be {_TYPE_NAMES[expected]}, "
                              f"got {type(value).__name__}")


_TYPE_NAMES = {str: "a string", int: "an integer", list: "an array"}
