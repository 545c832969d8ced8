"""A hardened Jinja2 sandbox for chat templates, which come from untrusted model files.

On top of :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no ``_``-prefixed attributes,
no mutation of lists/dicts) this module:

* refuses at compile time any ``x._name`` / ``x['_name']`` access, ``include``/``import``/
  ``extends``, and templates longer than ``MAX_TEMPLATE_CHARS``;
* charges a per-render step budget for every loop iteration, every call (macros, methods,
  ``loop()`` recursion) and every filter (by the size of its input), so nested loops and
  exponential recursion stop with an error instead of spinning;
* bounds every string or list the template builds (``~``, ``+``, ``*``, ``replace``,
  ``join``, ``indent``, ``tojson``) and the rendered output by a character cap, checking the
  size *before* building when it could grow multiplicatively;
* drops filters, globals and string methods that pad or format (``center``, ``format``,
  ``ljust``, ``lipsum``, ...) and big-integer arithmetic.

Every violation raises :class:`TemplateLimitError`; callers turn it into ``TokenizerError``.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import nodes, pass_context
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.visitor import NodeTransformer

MAX_TEMPLATE_CHARS = 128 * 1024
DEFAULT_MAX_OUTPUT_CHARS = 2_000_000
DEFAULT_STEP_BUDGET = 250_000
CALL_STEPS = 4  # a call (macro, method) costs several loop iterations' worth of time
MAX_INT_BITS = 4096
MAX_INDENT = 64
LOOP_FILTER = "flexserve_loop"
SIZE_FILTER = "flexserve_size"

_SAFE_FILTERS = (
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first",
    "float", "forceescape", "groupby", "int", "items", "last", "length", "list", "lower",
    "map", "max", "min", "reject", "rejectattr", "reverse", "round", "safe", "select",
    "selectattr", "sort", "string", "striptags", "sum", "title", "trim", "truncate", "unique",
    "upper", "urlencode", "wordcount",
)
_BLOCKED_STR_METHODS = frozenset({
    "center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map",
    "encode", "translate", "maketrans",
})


class TemplateLimitError(Exception):
    """A chat template broke a sandbox rule or exceeded a resource limit."""


class _Budget:
    def __init__(self, steps: int, max_chars: int) -> None:
        self.steps = steps
        self.max_chars = max_chars

    def charge(self, steps: int) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise TemplateLimitError("chat template exceeded its step budget (runaway loop?)")

    def check_size(self, n_items: int, what: str) -> None:
        if n_items > self.max_chars:
            raise TemplateLimitError(f"chat template built a {what} longer than {self.max_chars}")


_BUDGET: contextvars.ContextVar[_Budget] = contextvars.ContextVar("chat_template_budget")


def _budget() -> _Budget:
    budget = _BUDGET.get(None)
    if budget is None:
        raise TemplateLimitError("chat template code ran outside a render")
    return budget


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict) else 0


# ---------------------------------------------------------------------------------- filters
@pass_context
def _loop_filter(_context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in iterable:
        budget.charge(1)
        yield item


@pass_context
def _size_filter(_context: Context, value: Any) -> Any:
    budget = _budget()
    budget.check_size(_sized(value), "string")
    budget.charge(1 + _sized(value))
    return value


def _charged(filter_func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Jinja filter: charge by input size, bound the result size."""

    pass_arg = getattr(filter_func, "jinja_pass_arg", None)
    skip = 0 if pass_arg is None else 1  # the context/environment Jinja passes first

    def run(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.charge(1 + _sized(args[skip] if len(args) > skip else None))
        result = filter_func(*args, **kwargs)
        budget.check_size(_sized(result), "value")
        return result

    if pass_arg is not None:
        run.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return run


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    _check_replace(text, old, new, count)
    return text.replace(old, new, -1 if count is None else count)


def _check_replace(text: str, old: str, new: str, count: int | None = -1) -> None:
    hits = text.count(str(old)) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    _budget().check_size(len(text) + hits * max(0, len(str(new)) - len(str(old))), "string")


def _join(value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    if attribute is not None:
        raise TemplateLimitError("join(attribute=...) is not supported in chat templates")
    return str(d).join(_join_parts(str(d), [str(x) for x in value]))


def _join_parts(separator: str, items: Iterable[Any]) -> list[Any]:
    """The items of a join, after checking the joined length against the size cap."""
    parts = list(items)
    lengths = sum(len(p) if isinstance(p, str) else 0 for p in parts)
    _budget().check_size(lengths + len(separator) * max(0, len(parts) - 1), "string")
    return parts


def _indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if (width if isinstance(width, int) else len(str(width))) > MAX_INDENT:
        raise TemplateLimitError(f"indent wider than {MAX_INDENT} is not allowed")
    pad = " " * width if isinstance(width, int) else str(width)
    lines = str(value).split("\n")
    _budget().check_size(len(str(value)) + len(pad) * len(lines), "string")
    out = [
        (pad + line) if (k or first) and (line or blank) else line
        for k, line in enumerate(lines)
    ]
    return "\n".join(out)


def _tojson(
    value: Any, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    """HF-style tojson: no HTML escaping, non-ASCII kept."""
    if indent is not None and not (isinstance(indent, int) and 0 <= indent <= MAX_INDENT):
        raise TemplateLimitError(f"tojson indent must be an integer up to {MAX_INDENT}")
    seps = tuple(separators) if separators is not None else None
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=seps,
                      sort_keys=sort_keys)


# ---------------------------------------------------------------------------------- binops
def _check_binop(op: str, left: Any, right: Any) -> None:
    budget = _budget()
    if op == "**":
        if (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() * max(right, 0) > MAX_INT_BITS
        ):
            raise TemplateLimitError("integer power too large for a chat template")
    elif op == "*":
        seq, n = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(seq, str | list | tuple) and isinstance(n, int):
            budget.check_size(len(seq) * max(n, 0), "repeated value")
            budget.charge(1 + len(seq) * max(n, 0))
        elif (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > MAX_INT_BITS
        ):
            raise TemplateLimitError("integer product too large for a chat template")
    elif op == "%" and isinstance(left, str):
        raise TemplateLimitError("printf-style string formatting is not allowed")


class GenerationTag(Extension):
    """``{% generation %}...{% endgeneration %}`` (HF's assistant-mask marker) renders its body."""

    tags = {"generation"}  # noqa: RUF012 (Jinja's Extension API)

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Guard(NodeTransformer):
    """Compile-time checks and budget hooks on a parsed template."""

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        if node.attr.startswith("_"):
            raise TemplateLimitError(f"access to attribute {node.attr!r} is not allowed")
        return self.generic_visit(node)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        arg = node.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str) and arg.value[:1] == "_":
            raise TemplateLimitError(f"access to item {arg.value!r} is not allowed")
        return self.generic_visit(node)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, LOOP_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        node = self.generic_visit(node)
        return nodes.Filter(node, SIZE_FILTER, [], [], None, None, lineno=node.lineno)

    def _refuse(self, node: nodes.Node) -> nodes.Node:
        raise TemplateLimitError(f"{type(node).__name__.lower()} is not allowed in chat templates")

    visit_Include = visit_Import = visit_FromImport = visit_Extends = _refuse


class ChatSandbox(ImmutableSandboxedEnvironment):
    """The Jinja environment chat templates run in (HF conventions: trim/lstrip blocks)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, GenerationTag]
        )
        self.filters = {name: _charged(self.filters[name]) for name in _SAFE_FILTERS}
        self.filters.update({
            "replace": _charged(_replace), "join": _charged(_join),
            "indent": _charged(_indent), "tojson": _charged(_tojson),
            LOOP_FILTER: _loop_filter, SIZE_FILTER: _size_filter,
        })
        self.globals.pop("lipsum", None)
        self.globals["range"] = self._range

    @staticmethod
    def _range(*args: int) -> range:
        numbers = safe_range(*args)
        _budget().charge(1 + len(numbers))
        return numbers

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _BLOCKED_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        """``str.format`` is blocked outright (see ``is_safe_attribute``), not sandboxed."""
        return None

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        """Fail on the spot instead of handing the template a silent Undefined."""
        raise TemplateLimitError(
            f"access to attribute {attribute!r} of a {type(obj).__name__} is not allowed"
        )

    def call_binop(self, context: Context, op: str, left: Any, right: Any) -> Any:
        _check_binop(op, left, right)
        result = self.binop_table[op](left, right)
        _budget().check_size(_sized(result), "value")
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.charge(CALL_STEPS)
        owner = getattr(__obj, "__self__", None)
        method = getattr(__obj, "__name__", "") if isinstance(owner, str) else ""
        if method == "replace":
            _check_replace(owner, *args, **kwargs)
        elif method == "join" and len(args) == 1 and not kwargs:
            args = (_join_parts(owner, args[0]),)
        result = super().call(__context, __obj, *args, **kwargs)
        budget.check_size(_sized(result), "value")
        return result

    def compile_checked(self, source: str) -> Any:
        """Parse, check and instrument ``source``; returns a Jinja template."""
        if len(source) > MAX_TEMPLATE_CHARS:
            raise TemplateLimitError(
                f"chat template of {len(source)} characters exceeds {MAX_TEMPLATE_CHARS}"
            )
        tree = _Guard().visit(self.parse(source))
        tree.set_environment(self)
        return self.from_string(tree)


def render_limited(
    template: Any, variables: dict[str, Any], max_chars: int, steps: int
) -> str:
    """Render with a fresh step budget, stopping as soon as the output passes ``max_chars``."""
    token = _BUDGET.set(_Budget(steps, max_chars))
    try:
        out: list[str] = []
        n_chars = 0
        for chunk in template.generate(**variables):
            n_chars += len(chunk)
            if n_chars > max_chars:
                raise TemplateLimitError(f"rendered chat prompt exceeds {max_chars} characters")
            out.append(chunk)
        return "".join(out)
    finally:
        _BUDGET.reset(token)

