"""Domain errors: each carries its API code and HTTP status; one handler renders them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


class TaskgateError(Exception):
    code = "INTERNAL_ERROR"
    status = 500
    default_message = "Internal error."
    summary = "Internal error"  # how the OpenAPI document describes this status
    # An authorization denial's audit record, written by the error handler after the
    # request's transaction has rolled back (taskgate.governance.access).
    denial: dict[str, Any] | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Sequence[FieldProblem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = list(details)
        self.headers = headers or {}
        super().__init__(self.message)


class ValidationFailed(TaskgateError):
    code, status, default_message = "VALIDATION_ERROR", 400, "The request is not valid."
    summary = "Validation error"

    @classmethod
    def field(cls, field: str, message: str) -> ValidationFailed:
        return cls(f"{field}: {message}", details=[FieldProblem(field, message)])


class Unauthorized(TaskgateError):
    code, status, default_message = "UNAUTHORIZED", 401, "Authentication required."
    summary = "Not authenticated"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(TaskgateError):
    code, status, default_message = "FORBIDDEN", 403, "Not allowed."
    summary = "Not allowed"


class NotFound(TaskgateError):
    code, status, default_message = "NOT_FOUND", 404, "Not found."
    summary = "Not found"


class MethodNotAllowed(TaskgateError):
    code, status, default_message = "METHOD_NOT_ALLOWED", 405, "Method not allowed."
    summary = "Method not allowed"


class Conflict(TaskgateError):
    code, status, default_message = "CONFLICT", 409, "Conflict with the current state."
    summary = "Conflict with the current state"


class PreconditionFailed(TaskgateError):
    code, status, default_message = "PRECONDITION_FAILED", 412, "The resource has changed."
    summary = "Stale If-Match version"


class PayloadTooLarge(TaskgateError):
    code, status, default_message = "PAYLOAD_TOO_LARGE", 413, "Request body too large."
    summary = "Body too large"


class UnsupportedMediaType(TaskgateError):
    code, status, default_message = "UNSUPPORTED_MEDIA_TYPE", 415, "Send application/json."
    summary = "Unsupported media type"


class IdempotencyKeyReused(TaskgateError):
    code, status = "IDEMPOTENCY_KEY_REUSED", 422
    default_message = "This Idempotency-Key was used with a different request."
    summary = "Idempotency key reused with another body"


class RateLimited(TaskgateError):
    code, status, default_message = "RATE_LIMITED", 429, "Too many requests."
    summary = "Rate limited"


class ServiceUnavailable(TaskgateError):
    """Temporarily unable to serve; every 503 says when to try again."""

    code, status, default_message = "SERVICE_UNAVAILABLE", 503, "Service unavailable."
    summary = "Service unavailable"

    def __init__(self, message: str | None = None, *, retry_after: int = 2) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


class DatabaseUnavailable(ServiceUnavailable):
    """The database cannot be reached or refuses connections for now (restarting, failing
    over, out of connections). A write cut off at its commit may have been saved: a retry with
    the same Idempotency-Key is safe either way."""

    default_message = (
        "The database is unavailable; retry shortly (a write with the same Idempotency-Key)."
    )


class InsufficientStorage(TaskgateError):
    """The disk under the database or the data directory is full: the write was rolled back."""

    code, status = "INSUFFICIENT_STORAGE", 507
    summary = "Insufficient storage"
    default_message = (
        "The server is out of storage space; nothing was saved. Retry once space is freed."
    )

    def __init__(self, message: str | None = None, *, retry_after: int = 30) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})


# The one table from an HTTP status to its error: the handler names a bare status (a 404 or 405
# from routing) with its code, and the OpenAPI document describes each status, both from here.
BY_STATUS: dict[int, type[TaskgateError]] = {
    error.status: error
    for error in (
        ValidationFailed,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        UnsupportedMediaType,
        IdempotencyKeyReused,
        RateLimited,
        TaskgateError,
        ServiceUnavailable,
        InsufficientStorage,
    )
}


def error_body(
    code: str, message: str, trace_id: str | None, details: Sequence[FieldProblem] = ()
) -> dict[str, object]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": d.field, "message": d.message} for d in details],
            "trace_id": trace_id,
        }
    }
