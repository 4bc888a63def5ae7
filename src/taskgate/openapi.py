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


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorEnvelope, "description": _summary(code)} for code in codes}


def _summary(status: int) -> str:
    error = BY_STATUS.get(status)
    return error.summary if error is not None else "Error"
