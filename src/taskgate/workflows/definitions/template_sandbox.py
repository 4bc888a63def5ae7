"""The sandboxed Jinja environment that workflow templates render in, and its size limits.

A rendered string, and every string or list built while rendering, is at most
``MAX_OUTPUT_CHARS`` long; ``range`` yields at most ``MAX_RANGE`` items. These stop the
cheap memory bombs (``'x' * 10**9``, ``'%99999999s'``, ``' '.center(10**9)``). CPU time is
not bounded here: render under the step's timeout.

On JSON objects a key wins over a method of the same name: ``event.payload.items`` is the
payload's ``items`` key, not ``dict.items``.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Iterable, Mapping
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
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_OUTPUT_CHARS = 1024 * 1024
MAX_RANGE = 10_000

# A width or precision of five digits or more, or one taken from an argument.
_PERCENT_BOMB = re.compile(r"%[#0 +-]*(?:\*|\d{5,})|%[#0 +-]*\d*\.(?:\*|\d{5,})")
_FORMAT_BOMB = re.compile(r"\{[^{}]*:[^{}]*(?:\d{5,}|\{)")


class LimitExceeded(SecurityError):
    """Rendering would build a value past one of the limits."""


class SandboxUndefined(ChainableUndefined, StrictUndefined):
    """Strict when used, chainable when only looked through (``a.b.c | default``)."""

    __slots__ = ()


def check_size(size: int, what: str = "value") -> None:
    if size > MAX_OUTPUT_CHARS:
        raise LimitExceeded(f"{what} would exceed {MAX_OUTPUT_CHARS} characters")


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple) else 0


def _check_format_string(fmt: str, pattern: re.Pattern[str]) -> None:
    if pattern.search(fmt):
        raise LimitExceeded("format widths or precisions of 10000 or more are not allowed")


def _safe_range(*args: int) -> range:
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise LimitExceeded(f"range() is limited to {MAX_RANGE} items")
    return rng


def bounded_join(parts: Iterable[Any], separator: str = "", what: str = "join()") -> str:
    pieces: list[str] = []
    total = 0
    for part in parts:
        text = part if isinstance(part, str) else str(part)
        total += len(text) + len(separator)
        check_size(total, what)
        pieces.append(text)
    return separator.join(pieces)


def _guard_str_method(method: Any, args: tuple[Any, ...]) -> None:
    """Refuse the string methods that can build a huge string from a small call."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str | bytes):
        return
    name = getattr(method, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        check_size(args[0], f"{name}()")
    elif name == "expandtabs":
        check_size(len(owner) * (args[0] if args and isinstance(args[0], int) else 8))
    elif name == "replace" and len(args) >= 2:
        count = owner.count(args[0]) if args[0] else len(owner) + 1
        check_size(len(owner) + count * _sized(args[1]), "replace()")


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
        return bounded_join(parts, what="concatenation")

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                    check_size(len(seq) * times, "repetition")
        elif operator == "+":
            if isinstance(left, str | bytes | list | tuple):
                check_size(len(left) + _sized(right), "concatenation")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
                check_size(right * abs(left).bit_length() // 8, "power")
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left, _PERCENT_BOMB)
            result = super().call_binop(context, operator, left, right)
            check_size(len(result))
            return result
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _guard_str_method(__obj, args)
        if getattr(__obj, "__name__", None) == "join" and isinstance(
            getattr(__obj, "__self__", None), str
        ):
            return bounded_join(args[0], __obj.__self__) if args else __obj()
        result = super().call(__context, __obj, *args, **kwargs)
        check_size(_sized(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_string(fmt, _FORMAT_BOMB)
            result = wrapped(*args, **kwargs)
            check_size(len(result))
            return result

        return checked


def finalize(value: Any) -> Any:
    """How a non-string value prints inside a string template."""
    if isinstance(value, types.GeneratorType):
        value = list(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def _center_filter(value: str, width: int = 80) -> str:
    check_size(width + _sized(value), "center()")
    return filters.do_center(value, width)


def _indent_filter(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if isinstance(width, int):
        check_size(width * (str(s).count("\n") + 1) + len(str(s)), "indent()")
    return filters.do_indent(s, width, first, blank)


def _format_filter(value: str, *args: Any, **kwargs: Any) -> str:
    _check_format_string(str(value), _PERCENT_BOMB)
    result = filters.do_format(value, *args, **kwargs)
    check_size(len(result))
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
    return bounded_join(value, d)


def _build_environment() -> _Environment:
    env = _Environment(
        undefined=SandboxUndefined, autoescape=False, finalize=finalize, keep_trailing_newline=True
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


ENVIRONMENT: Environment = _build_environment()


def describe_error(exc: Exception) -> str:
    """A one-line account of why a template failed, for the template's author."""
    if isinstance(exc, LimitExceeded):
        return f"template limit: {exc}"
    if isinstance(exc, RecursionError):
        # Parsing, compiling and rendering recurse once per level of brackets, blocks or data.
        return "template limit: nested too deeply (in the template or in the data it renders)"
    if isinstance(exc, SecurityError):
        return f"unsafe template: {exc}"
    if isinstance(exc, JinjaTemplateError):
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line and line > 1 else ""
        return f"{exc.message or type(exc).__name__}{where}"
    return f"{type(exc).__name__}: {exc}"
