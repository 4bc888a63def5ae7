"""One place that turns every failure into the API's error envelope."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from taskgate.errors import FieldProblem, TaskgateError, error_body
from taskgate.http.context import current_trace_id

log = structlog.get_logger()

_STATUS_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    412: "PRECONDITION_FAILED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}


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


async def _taskgate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskgateError)
    if exc.status >= 500:
        log.error("request_failed", code=exc.code, message=exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


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
    code = _STATUS_CODES.get(exc.status_code, "INTERNAL_ERROR")
    message = {404: "Not found.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request.app.router.routes, request.scope)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    return error_response(exc.status_code, code, message, headers=headers)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path)
    return error_response(500, "INTERNAL_ERROR", "Internal error; quote the trace id.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TaskgateError, _taskgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
