"""A workflow: a DAG of LLM calls, each naming its model, prompt and expected output length.

A call's ``prompt`` is the exact text its model is given (no chat template is applied on top;
a chat model's prompt carries its own markup). ``{name}`` placeholders in it are filled with
the text outputs of the calls it depends on; ``{{`` and ``}}`` are literal braces, as in
:meth:`str.format`. In timing-only mode no text exists, and ``prompt_tokens`` gives the length
of the prompt as the model would see it, dependency outputs included.

Construction validates everything, so a :class:`Workflow` that exists is a valid one.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from flexserve.errors import ConfigError


def _check_count(owner: str, field: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{owner}: {field} must be an integer >= 1, got {value!r}")


def _check_name(owner: str, field: str, value: object) -> None:
    if not isinstance(value, str) or not value.isidentifier():
        raise ConfigError(f"{owner}: {field} must be an identifier (letters, digits, _), "
                          f"got {value!r}")


def prompt_fields(prompt: str, owner: str = "prompt") -> tuple[str, ...]:
    """The ``{name}`` fields of a prompt, in order of first appearance."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(prompt) if field is not None]
    except ValueError as exc:
        raise ConfigError(f"{owner}: malformed placeholder in prompt ({exc}); "
                          f"write literal braces as {{{{ and }}}}") from exc
    for field in fields:
        if not field.isidentifier():
            raise ConfigError(f"{owner}: placeholder {{{field}}} must be a bare call name")
    return tuple(dict.fromkeys(fields))


@dataclass(frozen=True)
class LlmCall:
    """One model invocation of a workflow."""

    name: str
    model: str
    prompt: str
    output_tokens: int
    deps: tuple[str, ...] = ()
    prompt_tokens: int | None = None

    def __post_init__(self) -> None:
        _check_name("call", "name", self.name)
        owner = f"call {self.name!r}"
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"{owner}: model must be a non-empty name")
        if not isinstance(self.prompt, str):
            raise ConfigError(f"{owner}: prompt must be a string")
        _check_count(owner, "output_tokens", self.output_tokens)
        _check_count(owner, "prompt_tokens", self.prompt_tokens, optional=True)
        if not self.prompt and self.prompt_tokens is None:
            raise ConfigError(f"{owner}: needs a prompt text or prompt_tokens")
        self._check_deps(owner)
        prompt_fields(self.prompt, owner)

    def _check_deps(self, owner: str) -> None:
        if not isinstance(self.deps, tuple) or not all(isinstance(d, str) for d in self.deps):
            raise ConfigError(f"{owner}: deps must be a tuple of call names")
        if len(set(self.deps)) != len(self.deps):
            raise ConfigError(f"{owner}: deps lists a call twice")
        if self.name in self.deps:
            raise ConfigError(f"{owner}: depends on itself")

    @property
    def placeholders(self) -> tuple[str, ...]:
        return prompt_fields(self.prompt)

    def render(self, outputs: Mapping[str, str]) -> str:
        """The prompt with each ``{dep}`` replaced by that dependency's text output."""
        missing = [name for name in self.placeholders if name not in outputs]
        if missing:
            raise ConfigError(f"call {self.name!r}: no output yet for {', '.join(missing)}")
        return self.prompt.format_map(outputs)


@dataclass(frozen=True)
class Workflow:
    """A named DAG of :class:`LlmCall` in declaration order."""

    name: str
    description: str
    calls: tuple[LlmCall, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("workflow: name must be a non-empty string")
        owner = f"workflow {self.name!r}"
        if not isinstance(self.description, str):
            raise ConfigError(f"{owner}: description must be a string")
        if not isinstance(self.calls, tuple) or not self.calls:
            raise ConfigError(f"{owner}: calls must be a non-empty tuple")
        if not all(isinstance(call, LlmCall) for call in self.calls):
            raise ConfigError(f"{owner}: every call must be an LlmCall")
        self._check_names(owner)
        self._check_references(owner)
        self._check_acyclic(owner)

    def _check_names(self, owner: str) -> None:
        seen: set[str] = set()
        for call in self.calls:
            if call.name in seen:
                raise ConfigError(f"{owner}: two calls are named {call.name!r}")
            seen.add(call.name)

    def _check_references(self, owner: str) -> None:
        names = {call.name for call in self.calls}
        for call in self.calls:
            for dep in call.deps:
                if dep not in names:
                    raise ConfigError(f"{owner}: call {call.name!r} depends on unknown "
                                      f"call {dep!r}")
            for field in call.placeholders:
                if field not in call.deps:
                    raise ConfigError(f"{owner}: call {call.name!r} uses {{{field}}} "
                                      f"but does not depend on {field!r}")

    def _check_acyclic(self, owner: str) -> None:
        cycle = _find_cycle({call.name: call.deps for call in self.calls})
        if cycle:
            raise ConfigError(f"{owner}: dependency cycle {' -> '.join(cycle)}")

    def call(self, name: str) -> LlmCall:
        for call in self.calls:
            if call.name == name:
                return call
        raise ConfigError(f"workflow {self.name!r} has no call {name!r}")

    def order(self) -> tuple[LlmCall, ...]:
        """A topological order; among calls that are ready, the earliest declared goes first."""
        done: set[str] = set()
        ordered: list[LlmCall] = []
        while len(ordered) < len(self.calls):
            nxt = self.ready(done)[0]
            ordered.append(nxt)
            done.add(nxt.name)
        return tuple(ordered)

    def models(self) -> tuple[str, ...]:
        """Each model once, in the order :meth:`order` first uses it."""
        return tuple(dict.fromkeys(call.model for call in self.order()))

    def ready(self, done: Iterable[str]) -> tuple[LlmCall, ...]:
        """Calls not yet done whose dependencies all are, in declaration order."""
        finished = set(done)
        unknown = finished - {call.name for call in self.calls}
        if unknown:
            raise ConfigError(f"workflow {self.name!r} has no call {sorted(unknown)[0]!r}")
        return tuple(call for call in self.calls
                     if call.name not in finished and finished.issuperset(call.deps))


def _find_cycle(deps: Mapping[str, tuple[str, ...]]) -> list[str]:
    """One dependency cycle as a closed path of names, or [] if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for dep in deps[name]:
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[name] = 2
        return []

    for name in deps:
        if name not in state and (found := visit(name)):
            return found
    return []
