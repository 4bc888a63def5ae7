"""Request bodies are standard JSON (RFC 8259) that the database can store as sent.

Python's ``json`` (FastAPI's parser) and pydantic's parser both read ``NaN``, ``Infinity`` and
a number too large for a double (``1e400``) as non-finite floats, which a JSON column then
stores as ``null``: a value the client sent, silently lost. orjson refuses them, and lone
UTF-16 surrogates (``"\\ud800"``, text no database can store) too, in about a microsecond for
a typical body, so every JSON body is checked with it before the endpoint parses it. Integers
past 64 bits are refused as well (the JSON columns are written with orjson, which cannot), and
data nested more than ``MAX_DEPTH`` deep.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

_JSON_TYPES = ("application/json", "application/merge-patch+json")
# JSON columns are written with orjson, which holds integers from -2**63 to 2**64 - 1.
_INT_MIN, _UINT_MAX = -(2**63), 2**64 - 1
_LONG_DIGITS = re.compile(rb"\d{19}")
# Deeper data would be stored, then fail every response that shows it: pydantic serialises
# at most about 250 levels, and Python's json and templates recurse once per level.
MAX_DEPTH = 100


def check_json(raw: bytes) -> None:
    """Raise the 400 (``RequestValidationError``) for a body that is not standard JSON, holds
    an integer past 64 bits or nests deeper than ``MAX_DEPTH``. A body no parser reads is left
    to the endpoint's, which says where it broke."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        document = _lenient(raw)
        if document is _MALFORMED:
            return
        problem = _problem(document) or {
            "type": "json_invalid",
            "loc": ("body", error.pos),
            "msg": error.msg,
        }
        raise RequestValidationError([problem]) from None
    if _worth_a_look(raw):
        document = _lenient(raw)
        # orjson read it, so only Python's recursion limit can have stopped json: too deep.
        found = _problem(document) if document is not _MALFORMED else _TOO_DEEP
        if found is not None:
            raise RequestValidationError([found])


def loads(raw: bytes | str) -> Any:
    """``raw`` parsed as ``check_json`` accepts it; ``ValueError`` otherwise.

    Integers keep every digit (orjson would round those past 64 bits to a float)."""
    orjson.loads(raw)
    document = json.loads(raw)
    problem = _problem(document)
    if problem is not None:
        raise ValueError(f"{'.'.join(map(str, problem['loc'][1:]))}: {problem['msg']}")
    return document


_MALFORMED = object()
_TOO_DEEP_MESSAGE = f"is nested more than {MAX_DEPTH} objects or arrays deep"
_TOO_DEEP = {"type": "too_deep", "loc": ("body",), "msg": _TOO_DEEP_MESSAGE}


def _worth_a_look(raw: bytes) -> bool:
    """Whether ``raw``, read by orjson, may still hold an integer past 64 bits (orjson reads
    it as a float) or nest too deep: only such bodies, rare, are parsed again to tell."""
    return _LONG_DIGITS.search(raw) is not None or raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


def _lenient(raw: bytes | str) -> Any:
    """``raw`` as Python's json reads it (NaN, big integers and all), or ``_MALFORMED``."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return _MALFORMED


def _problem(document: Any) -> dict[str, Any] | None:
    """The first value in ``document`` that the database or a response cannot hold as sent,
    as a validation problem."""
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while pending:
        item, where = pending.pop()
        if len(where) > MAX_DEPTH:
            return {**_TOO_DEEP, "loc": ("body", *where[:MAX_DEPTH])}
        if isinstance(item, float) and not math.isfinite(item):
            message = "must be a finite number (NaN, Infinity and numbers past 1.8e308 are not)"
            return {"type": "finite_number", "loc": ("body", *where), "msg": message}
        if isinstance(item, int) and not _INT_MIN <= item <= _UINT_MAX:
            message = "must be an integer within 64 bits"
            return {"type": "int_too_large", "loc": ("body", *where), "msg": message}
        if isinstance(item, dict):
            pending.extend((v, (*where, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            pending.extend((v, (*where, i)) for i, v in reversed(list(enumerate(item))))
    return None


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # FastAPI reads an untyped body as JSON
    media = content_type.split(";")[0].strip().lower()
    return media in _JSON_TYPES or media.endswith("+json")


class JsonRoute(APIRoute):
    """A route whose JSON body, if it takes one, is checked by ``check_json`` first."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def checked(request: Request) -> Response:
            raw = await request.body()  # kept by the request: FastAPI reads it from there
            if raw and _is_json(request.headers.get("content-type")):
                check_json(raw)
            return await handler(request)

        return checked
