"""One place that turns every failure into the API's error envelope."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from taskgate.errors import (
    BY_STATUS,
    DatabaseUnavailable,
    FieldProblem,
    InsufficientStorage,
    TaskgateError,
    error_body,
)
from taskgate.http.context import current_trace_id

log = structlog.get_logger()

# SQLSTATEs of a server that is out of reach for now: connection exceptions (08), shutting
# down or starting up (57P), out of resources such as connections (53); 53100 is a full disk.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53")
_DISK_FULL_SQLSTATE = "53100"
_SQLITE_FULL, _SQLITE_BUSY, _SQLITE_LOCKED = 13, 5, 6
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[FieldProblem] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, current_trace_id(), details), status_code=status, headers=headers
    )


def _field_path(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_problems(errors: Sequence[Any]) -> list[FieldProblem]:
    problems = []
    for err in errors:
        if err.get("type") == "json_invalid":
            problems.append(FieldProblem("body", "Malformed JSON: " + str(err.get("msg", ""))))
            continue
        problems.append(FieldProblem(_field_path(err.get("loc", ())), str(err.get("msg", ""))))
    return problems


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what a driver error wraps, and what it was raised from (not what it
    was raised while handling: a bug in an error path stays a bug)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        pending += [
            orig if isinstance(orig, BaseException) else None,
            current.__cause__,
        ]


def infrastructure_error(exc: BaseException) -> TaskgateError | None:
    """What to answer when the ground under a request gave way: the database out of reach
    (503 with Retry-After) or a full disk (507); None for anything else, a bug."""
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.errno in _NO_SPACE:
            return InsufficientStorage()
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str):
            if sqlstate == _DISK_FULL_SQLSTATE:
                return InsufficientStorage()
            if sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
                return DatabaseUnavailable()
        sqlite_code = getattr(cause, "sqlite_errorcode", None)
        if sqlite_code == _SQLITE_FULL:
            return InsufficientStorage()
        if sqlite_code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return DatabaseUnavailable("The database is busy; nothing was saved. Retry shortly.")
        if isinstance(cause, ConnectionError | TimeoutError | socket.gaierror | PoolTimeout):
            return DatabaseUnavailable()
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return DatabaseUnavailable()
    return None


def failure_error(exc: BaseException, path: str | None) -> TaskgateError:
    """The error to answer for an exception nothing else handled, logged once here."""
    mapped = infrastructure_error(exc)
    if mapped is None:
        log.error("unhandled_error", path=path, exc_info=exc)
        return TaskgateError("Internal error; quote the trace id.")
    log.warning("request_failed", path=path, code=mapped.code, error=str(exc)[:500])
    return mapped


async def _taskgate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskgateError)
    if exc.denial is not None:
        _record_denial(request, exc.denial)
    if exc.status >= 500:
        log.error("request_failed", code=exc.code, message=exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _record_denial(request: Request, values: dict[str, Any]) -> None:
    """Audit an authorization denial through the recorder the app binds
    (``app.state.record_denial``): in a unit of work of its own, after the request's has
    rolled back."""
    recorder = getattr(request.app.state, "record_denial", None)
    if recorder is not None:
        recorder(values)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = validation_problems(exc.errors())
    malformed = any(p.message.startswith("Malformed JSON") for p in problems)
    message = "Malformed JSON body." if malformed else "The request is not valid."
    return error_response(400, "VALIDATION_ERROR", message, problems)


def _allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """The methods a path answers, over every route of it: the router's 405 names only the
    first route that matched the path. A literal path (``/approvals/decision``) is not also
    a value of a parameter (``/approvals/{approval_id}``): the routes with the fewest path
    parameters win."""
    matching = [
        route
        for route in routes
        if isinstance(route, Route) and route.methods and route.matches(scope)[0] != Match.NONE
    ]
    fewest = min((len(route.param_convertors) for route in matching), default=0)
    methods = {
        method
        for route in matching
        if len(route.param_convertors) == fewest
        for method in route.methods or ()
    }
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = BY_STATUS.get(exc.status_code, TaskgateError).code
    message = {404: "Not found.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request.app.router.routes, request.scope)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return error_response(exc.status_code, code, message, headers=headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    error = failure_error(exc, request.url.path)
    return error_response(error.status, error.code, error.message, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TaskgateError, _taskgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
