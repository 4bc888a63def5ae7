"""Keyset pagination: ``limit``, opaque signed ``cursor``, ``next`` link, optional ``count``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel
from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from taskgate.errors import ValidationFailed

T = TypeVar("T")
MAX_LIMIT = 100
# A cursor is URL-safe base64 without padding (``_encode``).
CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"
Item = TypeVar("Item")


class Page(BaseModel, Generic[T]):
    results: list[T]
    next: str | None
    count: int | None = None


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None
    count: bool
    ordering: str
    url: str
    signing_key: bytes


def page_params(
    orderings: Sequence[str], default: str = "-created_at"
) -> Callable[..., Awaitable[PageParams]]:
    """A dependency parsing the paging query of a list endpoint with these orderings."""
    allowed = ", ".join(orderings)

    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a costly hop here.
    async def dependency(
        request: Request,
        limit: int = Query(
            25,
            description=f"Page size, 1-{MAX_LIMIT}.",
            json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT},
        ),
        cursor: str | None = Query(
            None,
            description="Opaque cursor from `next`.",
            json_schema_extra={"pattern": CURSOR_PATTERN},
        ),
        count: bool = Query(False, description="Include the total count (costs a query)."),
        ordering: str = Query(
            default, description=f"One of: {allowed}.", json_schema_extra={"enum": list(orderings)}
        ),
    ) -> PageParams:
        # Checked here rather than by Query(ge=, le=, pattern=) for messages a person reads.
        if not 1 <= limit <= MAX_LIMIT:
            raise ValidationFailed.field("limit", f"must be between 1 and {MAX_LIMIT}")
        if ordering not in orderings:
            raise ValidationFailed.field("ordering", f"must be one of: {allowed}")
        return PageParams(
            limit, cursor, count, ordering, str(request.url), request.app.state.cursor_key
        )

    return dependency


def _encode(values: list[Any], key: bytes) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    sig = hmac.new(key, raw, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(raw + sig).decode().rstrip("=")


def _decode(cursor: str, key: bytes) -> list[Any]:
    try:
        blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        raw, sig = blob[:-12], blob[-12:]
        if not hmac.compare_digest(hmac.new(key, raw, hashlib.sha256).digest()[:12], sig):
            raise ValueError("bad signature")
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != 3:
            raise ValueError("bad shape")
        return values
    except ValueError as exc:
        raise ValidationFailed.field("cursor", "is not a valid cursor") from exc


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return ["dt", value.isoformat()]
    if isinstance(value, uuid.UUID):
        return ["uuid", str(value)]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 2 and value[0] == "dt":
        return datetime.fromisoformat(value[1])
    if isinstance(value, list) and len(value) == 2 and value[0] == "uuid":
        return uuid.UUID(value[1])
    return value


def _with_cursor(url: str, cursor: str) -> str:
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "cursor"]
    query.append(("cursor", cursor))
    return urlunsplit(("", "", parts.path, urlencode(query), ""))


async def paginate(
    session: AsyncSession,
    stmt: Select[tuple[Item]],
    params: PageParams,
    columns: Mapping[str, InstrumentedAttribute[Any]],
    id_column: InstrumentedAttribute[Any],
) -> tuple[list[Item], str | None, int | None]:
    """One page of ``stmt`` in ``params.ordering``; ``columns`` maps field names to columns."""
    descending = params.ordering.startswith("-")
    field = params.ordering.lstrip("-")
    column = columns[field]
    total = None
    if params.count:
        total = await session.scalar(
            select(func.count()).select_from(stmt.order_by(None).subquery())
        )
    if params.cursor:
        ordering, raw_value, raw_id = _decode(params.cursor, params.signing_key)
        if ordering != params.ordering:
            raise ValidationFailed.field("cursor", "belongs to another ordering")
        value, last_id = _from_json(raw_value), _from_json(raw_id)
        if descending:
            stmt = stmt.where(or_(column < value, and_(column == value, id_column < last_id)))
        else:
            stmt = stmt.where(or_(column > value, and_(column == value, id_column > last_id)))
    order = (column.desc(), id_column.desc()) if descending else (column.asc(), id_column.asc())
    rows = list((await session.scalars(stmt.order_by(*order).limit(params.limit + 1))).all())
    next_link = None
    if len(rows) > params.limit:
        rows = rows[: params.limit]
        last = rows[-1]
        values = [
            params.ordering,
            _to_json(getattr(last, column.key)),
            _to_json(getattr(last, id_column.key)),
        ]
        next_link = _with_cursor(params.url, _encode(values, params.signing_key))
    return rows, next_link, total


async def page_of(
    session: AsyncSession,
    stmt: Select[tuple[Item]],
    params: PageParams,
    columns: Mapping[str, InstrumentedAttribute[Any]],
    id_column: InstrumentedAttribute[Any],
    *,
    show: Callable[[Item], T],
) -> Page[T]:
    """``paginate``'s page as a list endpoint answers it, each row shown through ``show``."""
    rows, next_link, total = await paginate(session, stmt, params, columns, id_column)
    return Page(results=[show(row) for row in rows], next=next_link, count=total)
