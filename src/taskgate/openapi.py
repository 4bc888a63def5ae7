"""OpenAPI helpers: the error responses an endpoint documents."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from taskgate.errors import BY_STATUS


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


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {"model": ErrorEnvelope, "description": _DESCRIPTIONS.get(code, "Error")}
        for code in codes
    }
