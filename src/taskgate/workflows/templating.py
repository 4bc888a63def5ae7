"""Sandboxed Jinja templates for workflow configs.

Context keys: ``event``, ``input``, ``steps`` (node id → ``{"output": ...}``), ``execution``,
``secrets``. Choices a template author notices:

- Undefined names fail loudly (``StrictUndefined``), but chain: ``{{ a.b.c | default('x') }}``
  and ``{% if a.b is defined %}`` work when ``a`` lacks ``b``.
- On JSON objects a key wins over a method of the same name: ``event.payload.items`` is the
  payload's ``items`` key, not ``dict.items``. Keys starting with ``_`` are data and readable;
  Python attributes starting with ``_`` are not.
- A string that is exactly one ``{{ expression }}`` keeps its native type (number, list,
  object…); any other template renders to a string, where objects and lists print as JSON.
- Macros, call blocks, includes, imports, ``namespace`` and ``cycler`` are not available.
- Templates are at most ``MAX_TEMPLATE_CHARS`` long; a rendered string, and every string or
  list built while rendering, at most ``MAX_OUTPUT_CHARS``; ``range`` at most ``MAX_RANGE``.
  These stop the cheap memory bombs. CPU time is not bounded here: render under the step's
  timeout.
- ``TemplateError`` messages may quote context values, secrets included: pass them through
  ``redact_secrets`` before storing them.
"""

from __future__ import annotations

import json
import re
import types
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import (
    ChainableUndefined,
    Environment,
    StrictUndefined,
    filters,
    nodes,
    pass_environment,
    pass_eval_context,
)
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 256 * 1024
MAX_OUTPUT_CHARS = 1024 * 1024
MAX_RANGE = 10_000
MAX_DEPTH = 64
_CACHED_CHARS = 8 * 1024  # compiled templates up to this size are kept (1024 of them)
REDACTED = "***"

_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPRESSION = re.compile(r"\{\{[-+]?(.*?)[-+]?\}\}", re.DOTALL)
# A width or precision of five digits or more, or one taken from an argument.
_PERCENT_BOMB = re.compile(r"%[#0 +-]*(?:\*|\d{5,})|%[#0 +-]*\d*\.(?:\*|\d{5,})")
_FORMAT_BOMB = re.compile(r"\{[^{}]*:[^{}]*(?:\d{5,}|\{)")
_FORBIDDEN_NODES: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.Macro, "macros"),
    (nodes.CallBlock, "call blocks"),
    (nodes.Extends, "extends"),
    (nodes.Include, "include"),
    (nodes.Import, "import"),
    (nodes.FromImport, "import"),
)


class TemplateError(ValueError):
    """A template that does not parse, touches something unsafe, or fails to render."""

    def __init__(self, message: str, *, template: str | None = None, path: str = "") -> None:
        self.message = message
        self.template = template
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)

    def at(self, path: str) -> TemplateError:
        """The same error, located at ``path`` inside a rendered value."""
        return TemplateError(self.message, template=self.template, path=path)


class _LimitExceeded(SecurityError):
    pass


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict when used, chainable when only looked through (``a.b.c | default``)."""

    __slots__ = ()


def _check_size(size: int, what: str = "value") -> None:
    if size > MAX_OUTPUT_CHARS:
        raise _LimitExceeded(f"{what} would exceed {MAX_OUTPUT_CHARS} characters")


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def _check_format_string(fmt: str, pattern: re.Pattern[str]) -> None:
    if pattern.search(fmt):
        raise _LimitExceeded("format widths or precisions of 10000 or more are not allowed")


def _safe_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise _LimitExceeded(f"range() is limited to {MAX_RANGE} items")
    return rng


def _bounded_join(parts: Iterable[Any], separator: str = "", what: str = "join()") -> str:
    pieces: list[str] = []
    total = 0
    for part in parts:
        text = part if isinstance(part, str) else str(part)
        total += len(text) + len(separator)
        _check_size(total, what)
        pieces.append(text)
    return separator.join(pieces)


def _guard_str_method(method: Any, args: tuple[Any, ...]) -> None:
    """Refuse the string methods that can build a huge string from a small call."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str | bytes):
        return
    name = getattr(method, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _check_size(args[0], f"{name}()")
    elif name == "expandtabs":
        _check_size(len(owner) * (args[0] if args and isinstance(args[0], int) else 8))
    elif name == "replace" and len(args) >= 2:
        count = owner.count(args[0]) if args[0] else len(owner) + 1
        _check_size(len(owner) + count * _sized(args[1]), "replace()")


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # ``a ~ b`` normally joins without a check; route it through the size guard.
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        return _bounded_join(parts, what="concatenation")

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                    _check_size(len(seq) * times, "repetition")
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple):
                _check_size(len(left) + _sized(right), "concatenation")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                _check_size(right * abs(left).bit_length() // 8, "power")
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left, _PERCENT_BOMB)
            result = super().call_binop(context, operator, left, right)
            _check_size(len(result))
            return result
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _guard_str_method(__obj, args)
        if getattr(__obj, "__name__", None) == "join" and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            return _bounded_join(args[0], __obj.__self__) if args else __obj()
        result = super().call(__context, __obj, *args, **kwargs)
        _check_size(_sized(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_string(fmt, _FORMAT_BOMB)
            result = wrapped(*args, **kwargs)
            _check_size(len(result))
            return result

        return checked


def _finalize(value: Any) -> Any:
    """How a non-string value prints inside a string template."""
    if isinstance(value, types.GeneratorType):
        value = list(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _center_filter(value: str, width: int = 80) -> str:
    _check_size(width + _sized(value), "center()")
    return filters.do_center(value, width)


def _indent_filter(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if isinstance(width, int):
        _check_size(width * (str(s).count("\n") + 1) + len(str(s)), "indent()")
    return filters.do_indent(s, width, first, blank)


def _format_filter(value: str, *args: Any, **kwargs: Any) -> str:
    _check_format_string(str(value), _PERCENT_BOMB)
    result = filters.do_format(value, *args, **kwargs)
    _check_size(len(result))
    return result


@pass_eval_context
def _replace_filter(
    eval_ctx: EvalContext, s: str, old: str, new: str, count: int | None = None
) -> str:
    text = str(s)
    _guard_str_method(text.replace, (str(old), str(new)))
    return filters.do_replace(eval_ctx, s, old, new, count)


@pass_environment
def _join_filter(
    environment: Environment,
    value: Iterable[Any],
    d: str = "",
    attribute: str | int | None = None,
) -> str:
    if attribute is not None:
        value = map(filters.make_attrgetter(environment, attribute), value)
    return _bounded_join(value, d)


def _build_environment() -> _Environment:
    env = _Environment(
        undefined=_Undefined, autoescape=False, finalize=_finalize, keep_trailing_newline=True
    )
    env.globals.clear()
    env.globals.update(range=_safe_range, dict=dict)
    env.filters.update(
        center=_center_filter,
        indent=_indent_filter,
        format=_format_filter,
        replace=_replace_filter,
        join=_join_filter,
    )
    return env


_ENV = _build_environment()


def is_template(value: str) -> bool:
    """Whether a string holds template syntax (otherwise it renders as itself)."""
    return any(marker in value for marker in _MARKERS)


def _describe(exc: Exception) -> str:
    if isinstance(exc, _LimitExceeded):
        return f"template limit: {exc}"
    if isinstance(exc, SecurityError):
        return f"unsafe template: {exc}"
    if isinstance(exc, JinjaTemplateError):
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line and line > 1 else ""
        return f"{exc.message or type(exc).__name__}{where}"
    return f"{type(exc).__name__}: {exc}"


def _parse(source: str) -> nodes.Template:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"template is longer than {MAX_TEMPLATE_CHARS} characters", template=source
        )
    try:
        tree = _ENV.parse(source)
    except Exception as exc:
        raise TemplateError(_describe(exc), template=source) from exc
    for node_type, label in _FORBIDDEN_NODES:
        if tree.find(node_type) is not None:
            raise TemplateError(f"{label} are not available in templates", template=source)
    return tree


def _compile(source: str) -> tuple[Template | None, Callable[..., Any] | None]:
    """The string template, or the single expression when ``source`` is ``{{ expr }}``."""
    if len(source) <= _CACHED_CHARS:
        return _compile_cached(source)
    return _compile_source(source)


def _compile_source(source: str) -> tuple[Template | None, Callable[..., Any] | None]:
    tree = _parse(source)
    try:
        body = tree.body
        if (
            len(body) == 1
            and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], nodes.TemplateData)
        ):
            match = _SINGLE_EXPRESSION.fullmatch(source)
            if match is not None:
                expression = _ENV.compile_expression(match.group(1), undefined_to_none=False)
                return None, expression
        return _ENV.from_string(tree), None
    except Exception as exc:
        raise TemplateError(_describe(exc), template=source) from exc


_compile_cached = lru_cache(maxsize=1024)(_compile_source)


def _compile_expression(source: str) -> Callable[..., Any]:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError("expression is too long", template=source)
    if len(source) <= _CACHED_CHARS:
        return _compile_expression_cached(source)
    return _compile_expression_source(source)


def _compile_expression_source(source: str) -> Callable[..., Any]:
    try:
        return _ENV.compile_expression(source, undefined_to_none=False)
    except Exception as exc:
        raise TemplateError(_describe(exc), template=source) from exc


_compile_expression_cached = lru_cache(maxsize=1024)(_compile_expression_source)


def check_template(source: str) -> None:
    """Raise ``TemplateError`` if ``source`` does not compile (for saving a workflow)."""
    if is_template(source):
        _compile(source)


def check_expression(source: str) -> None:
    """Raise ``TemplateError`` if a condition expression does not compile."""
    _condition_source(source)


def _json_value(value: Any, source: str, depth: int = 0) -> Any:
    """Turn an expression's result into JSON data, or refuse it."""
    if depth > MAX_DEPTH:
        raise TemplateError("result is nested too deeply", template=source)
    if isinstance(value, _Undefined):
        str(value)  # raises the UndefinedError (or SecurityError) it carries
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)  # Markup → str
    if isinstance(value, Mapping):
        return {str(k): _json_value(v, source, depth + 1) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, bytes):
        items = []
        for item in value:
            items.append(_json_value(item, source, depth + 1))
            _check_size(len(items), "list")
        return items
    raise TemplateError(f"result of type {type(value).__name__} is not JSON data", template=source)


def _render_template(source: str, context: Mapping[str, Any], *, native: bool) -> Any:
    template, expression = _compile(source)
    try:
        if expression is not None:
            value = _json_value(expression(**context), source)
            return value if native else _bounded_join([_finalize(value)])
        assert template is not None
        pieces: list[str] = []
        total = 0
        for piece in template.generate(**context):
            total += len(piece)
            _check_size(total, "rendered text")
            pieces.append(piece)
        return "".join(pieces)
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(_describe(exc), template=source) from exc


def render_string(source: str, context: Mapping[str, Any]) -> str:
    """Render one template to text (a log line, a message)."""
    if not is_template(source):
        return source
    result: str = _render_template(source, context, native=False)
    return result


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dict keys stay as written).

    ``"{{ steps.fetch.output }}"`` alone yields the output itself (an object, a number…);
    any other template yields a string. Raises ``TemplateError`` with the ``path`` of the
    failing string (``headers.Authorization``, ``items[2]``).
    """
    return _render_at(value, context, "", 0)


def _render_at(value: Any, context: Mapping[str, Any], path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise TemplateError("value is nested too deeply", path=path)
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            return _render_template(value, context, native=True)
        except TemplateError as exc:
            raise exc.at(path) from exc
    if isinstance(value, Mapping):
        return {
            key: _render_at(item, context, f"{path}.{key}" if path else str(key), depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            _render_at(item, context, f"{path}[{index}]", depth + 1)
            for index, item in enumerate(value)
        ]
    return value


def _condition_source(expression: str) -> tuple[str, bool]:
    """``(source, is_expression)``: a bare expression, or a template rendered to text."""
    stripped = expression.strip()
    if is_template(stripped):
        _, single = _compile(stripped)
        if single is not None:
            match = _SINGLE_EXPRESSION.fullmatch(stripped)
            assert match is not None
            return match.group(1), True
        return stripped, False
    _compile_expression(stripped)
    return stripped, True


_TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"false", "no", "off", "0", ""})


def evaluate_condition(expression: str, context: Mapping[str, Any]) -> bool:
    """The truth of a ``condition`` node.

    ``expression`` is bare (``steps.check.output.amount > 100``) or a template
    (``{{ ... }}`` or ``{% if %}true{% endif %}``). Booleans, numbers, ``None`` and
    collections mean what Python says; a string must read ``true/yes/on/1`` or
    ``false/no/off/0`` (or be empty), so a stray ``"false"`` is never true.
    """
    source, bare = _condition_source(expression)
    if bare:
        try:
            value = _json_value(_compile_expression(source)(**context), source)
        except TemplateError:
            raise
        except Exception as exc:
            raise TemplateError(_describe(exc), template=expression) from exc
    else:
        value = _render_template(source, context, native=False)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise TemplateError(
            f"condition gave the text {value[:40]!r}, not true or false", template=expression
        )
    return bool(value)


def template_context(
    *,
    event: Any = None,
    input: Any = None,
    steps: Mapping[str, Any] | None = None,
    execution: Any = None,
    secrets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The mapping templates see. ``steps`` maps a node id to ``{"output": ...}``."""
    return {
        "event": event if event is not None else {},
        "input": input if input is not None else {},
        "steps": dict(steps or {}),
        "execution": execution if execution is not None else {},
        "secrets": dict(secrets or {}),
    }


def redact_secrets(value: Any, secret_values: Iterable[str]) -> Any:
    """Replace every occurrence of a secret in ``value`` (deeply) with ``"***"``.

    Also catches a secret as it appears JSON-escaped or URL-encoded. Non-string leaves
    (numbers) are left alone; empty secrets are ignored. Use on step input, output and
    error messages before they are stored or streamed.
    """
    variants: set[str] = set()
    for secret in secret_values:
        if not secret:
            continue
        variants.add(secret)
        variants.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        variants.add(urllib.parse.quote(secret, safe=""))
        variants.add(urllib.parse.quote_plus(secret))
    if not variants:
        return value
    pattern = re.compile("|".join(re.escape(v) for v in sorted(variants, key=len, reverse=True)))
    return _redact(value, pattern)


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {_redact(k, pattern): _redact(v, pattern) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item, pattern) for item in value]
    if isinstance(value, tuple):
        return tuple(_redact(item, pattern) for item in value)
    return value


__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_RANGE",
    "MAX_TEMPLATE_CHARS",
    "TemplateError",
    "check_expression",
    "check_template",
    "evaluate_condition",
    "is_template",
    "redact_secrets",
    "render_string",
    "render_value",
    "template_context",
]
