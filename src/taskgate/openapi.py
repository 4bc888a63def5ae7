"""OpenAPI helpers: the error responses an endpoint documents, and the document as served."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from taskgate.errors import BY_STATUS
from taskgate.http.auth import ScopeCheck


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail]
    trace_id: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorBody


# The one status table lives in taskgate/errors.py.
_DESCRIPTIONS = {status: error.summary for status, error in BY_STATUS.items()}
_SCHEMAS = "#/components/schemas/"
_ENVELOPE_REF = {"$ref": _SCHEMAS + "ErrorEnvelope"}
# Every signed-in API operation works in a project, which a request may name by this header.
TENANT_HEADER = {
    "name": "X-Tenant-ID",
    "in": "header",
    "required": False,
    "description": "The project to work in, by id or slug (default: the caller's default "
    "project, or its API key's). An unknown project, or one the caller may not see, is a 404.",
    "schema": {"type": "string", "maxLength": 200},
}
# Signed-in by other means than a principal: sign-in itself, and signed inbound webhooks.
_NO_PROJECT = (
    "/api/v1/auth/login",
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/api/v1/webhooks/",
)
# FastAPI documents a 422 of its own (HTTPValidationError) on every operation with parameters
# or a body; our handler answers those validation errors 400 with the envelope.
_FASTAPI_VALIDATION = {"$ref": _SCHEMAS + "HTTPValidationError"}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"model": ErrorEnvelope, "description": _DESCRIPTIONS.get(code, "Error")}
        for code in codes
    }


def install_openapi(app: FastAPI) -> None:
    """Serve FastAPI's document corrected to what the server answers: a request that fails
    validation is a 400 with the error envelope (not FastAPI's 422), and every error is JSON,
    also on operations whose success is another media type (event streams). Each operation's
    description ends with the API-key scopes its route declares."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # FastAPI's builder keeps the document it returns in app.openapi_schema.
            app.openapi_schema = describe_scopes(app, as_served(build()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def as_served(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (FastAPI's) with its validation and error responses made true, and the
    project header declared on every operation that takes it."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for path, path_item in document.get("paths", {}).items():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if (
                path.startswith("/api/v1/")
                and "401" in responses
                and not path.startswith(_NO_PROJECT)
            ):
                operation.setdefault("parameters", []).append(dict(TENANT_HEADER))
                responses.setdefault("404", {"description": _DESCRIPTIONS[404]})
            _correct_errors(responses)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if "ErrorEnvelope" not in schemas:
        envelope = ErrorEnvelope.model_json_schema(ref_template=_SCHEMAS + "{model}")
        schemas.update(envelope.pop("$defs", {}))
        schemas["ErrorEnvelope"] = envelope
    return document


def describe_scopes(app: FastAPI, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the scopes of each route (``http/auth.py``) told in its operations'
    descriptions."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        checks = [d.call for d in route.dependant.dependencies if isinstance(d.call, ScopeCheck)]
        if not checks:
            continue
        told = " ".join(check.describe() for check in checks)
        path_item = document.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            before = operation.get("description")
            operation["description"] = f"{before}\n\n{told}" if before else told
    return document


def _correct_errors(responses: dict[str, Any]) -> None:
    automatic = responses.get("422", {}).get("content", {}).get("application/json", {})
    if automatic.get("schema") == _FASTAPI_VALIDATION:
        del responses["422"]
        responses.setdefault(
            "400",
            {"description": _DESCRIPTIONS[400], "content": _json(_ENVELOPE_REF)},
        )
    for status, response in responses.items():
        if status[0] not in "45":
            continue
        content = response.get("content", {})
        schema = next((media.get("schema") for media in content.values() if media), None)
        response["content"] = _json(schema or _ENVELOPE_REF)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}
