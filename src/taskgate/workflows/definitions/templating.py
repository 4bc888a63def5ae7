"""Workflow configs as templates: compile, render, evaluate conditions.

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
- Templates are at most ``MAX_TEMPLATE_CHARS`` long; what rendering may build is bounded in
  ``template_sandbox``. CPU time is not bounded here: render under the step's timeout.
- ``TemplateError`` messages may quote context values, secrets included: pass them through
  ``secret_redaction.redact_secrets`` before storing them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import nodes
from jinja2.environment import Template

from taskgate.workflows.definitions.template_sandbox import (
    ENVIRONMENT,
    SandboxUndefined,
    bounded_join,
    check_size,
    describe_error,
    finalize,
)

MAX_TEMPLATE_CHARS = 256 * 1024
MAX_DEPTH = 64
_CACHED_CHARS = 8 * 1024  # compiled templates up to this size are kept (1024 of them)

_MARKERS = ("{{", "{%", "{#")
_SINGLE_EXPRESSION = re.compile(r"\{\{[-+]?(.*?)[-+]?\}\}", re.DOTALL)
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


def is_template(value: str) -> bool:
    """Whether a string holds template syntax (otherwise it renders as itself)."""
    return any(marker in value for marker in _MARKERS)


def _parse(source: str) -> nodes.Template:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(
            f"template is longer than {MAX_TEMPLATE_CHARS} characters", template=source
        )
    try:
        tree = ENVIRONMENT.parse(source)
    except Exception as exc:
        raise TemplateError(describe_error(exc), template=source) from exc
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
                expression = ENVIRONMENT.compile_expression(match.group(1), undefined_to_none=False)
                return None, expression
        return ENVIRONMENT.from_string(tree), None
    except Exception as exc:
        raise TemplateError(describe_error(exc), template=source) from exc


_compile_cached = lru_cache(maxsize=1024)(_compile_source)


def _compile_expression(source: str) -> Callable[..., Any]:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError("expression is too long", template=source)
    if len(source) <= _CACHED_CHARS:
        return _compile_expression_cached(source)
    return _compile_expression_source(source)


def _compile_expression_source(source: str) -> Callable[..., Any]:
    try:
        return ENVIRONMENT.compile_expression(source, undefined_to_none=False)
    except Exception as exc:
        raise TemplateError(describe_error(exc), template=source) from exc


_compile_expression_cached = lru_cache(maxsize=1024)(_compile_expression_source)


def nested_too_deeply(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON data nests objects and lists more than ``limit`` deep (``_render_at``
    refuses those), found without recursing: the data may be deep enough to exhaust the
    stack."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        if isinstance(item, Mapping | list | tuple):
            children = item.values() if isinstance(item, Mapping) else item
            pending.extend((child, depth + 1) for child in children)
    return False


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
    if isinstance(value, SandboxUndefined):
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
            check_size(len(items), "list")
        return items
    raise TemplateError(f"result of type {type(value).__name__} is not JSON data", template=source)


def _render_template(source: str, context: Mapping[str, Any], *, native: bool) -> Any:
    template, expression = _compile(source)
    try:
        if expression is not None:
            value = _json_value(expression(**context), source)
            return value if native else bounded_join([finalize(value)])
        assert template is not None
        pieces: list[str] = []
        total = 0
        for piece in template.generate(**context):
            total += len(piece)
            check_size(total, "rendered text")
            pieces.append(piece)
        return "".join(pieces)
    except TemplateError:
        raise
    except Exception as exc:
        raise TemplateError(describe_error(exc), template=source) from exc


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
            raise TemplateError(describe_error(exc), template=expression) from exc
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


__all__ = [
    "MAX_DEPTH",
    "MAX_TEMPLATE_CHARS",
    "TemplateError",
    "check_expression",
    "check_template",
    "evaluate_condition",
    "is_template",
    "nested_too_deeply",
    "render_string",
    "render_value",
    "template_context",
]
