"""Paging every list goes through: one helper, ``paginate``, for the three forms a list is
asked for in.

- Keyset, the native form (``PageParams``): ``limit``, an opaque signed ``cursor``, a
  ``next`` link, ``count`` only when asked; answered as ``Page``.
- Offset, the Shannon form (``OffsetParams``): ``limit`` and ``offset``, newest first, with
  the total; each list answers it in Shannon's own shape (``{tasks, total_count}``, …).
- Page number, the Django Automate form (``PageNumberParams``): ``page`` and ``page_size``
  (at most 100), answered as ``NumberedPage``: ``{count, next, previous, results}``.

A repository describes a list as a ``Listing`` (its statement and the columns it may be
ordered by); a service passes it to ``paginate`` with the parsed paging query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import Query, Request
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from taskgate.errors import ValidationFailed
from taskgate.http.params import PageNumber

T = TypeVar("T")
Item = TypeVar("Item")
MAX_LIMIT = 100
DEFAULT_LIMIT = 25
# A cursor is URL-safe base64 without padding (``_encode``).
CURSOR_PATTERN = "^[A-Za-z0-9_-]*$"
NEWEST_FIRST = "-created_at"


class Page(BaseModel, Generic[T]):
    """A page of the native (keyset) form."""

    results: list[T]
    next: str | None
    count: int | None = None


class NumberedPage(BaseModel, Generic[T]):
    """A page of the Django Automate (page number) form; the links are absolute URLs."""

    count: int
    next: str | None
    previous: str | None
    results: list[T]


@dataclass(frozen=True)
class Listing(Generic[Item]):
    """A list as its repository builds it: the statement, the columns it may be ordered by
    (keyed by the name ``ordering`` uses), and the unique column that breaks ties."""

    stmt: Select[tuple[Item]]
    columns: Mapping[str, InstrumentedAttribute[Any]]
    id_column: InstrumentedAttribute[Any]


@dataclass(frozen=True)
class PageParams:
    """The keyset form: a page of ``limit`` after ``cursor``, in ``ordering``."""

    limit: int
    cursor: str | None
    count: bool
    ordering: str
    url: str
    signing_key: bytes


@dataclass(frozen=True)
class OffsetParams:
    """The Shannon form: ``limit`` rows after the first ``offset``, always counted."""

    limit: int
    offset: int
    ordering: str = NEWEST_FIRST


@dataclass(frozen=True)
class PageNumberParams:
    """The Django Automate form: page ``page`` (from 1) of ``page_size`` rows, counted."""

    page: int
    page_size: int
    url: str
    ordering: str = NEWEST_FIRST


PagingParams = PageParams | OffsetParams | PageNumberParams


@dataclass(frozen=True)
class Window(Generic[Item]):
    """The rows of one page and where its neighbours are; ``count`` is the total, when it
    was counted (always in the offset and page-number forms)."""

    rows: list[Item]
    next: str | None = None
    previous: str | None = None
    count: int | None = None

    def page(self, results: list[T]) -> Page[T]:
        return Page(results=results, next=self.next, count=self.count)

    def numbered(self, results: list[T]) -> NumberedPage[T]:
        assert self.count is not None  # the page-number form always counts
        return NumberedPage(
            count=self.count, next=self.next, previous=self.previous, results=results
        )


def page_params(
    orderings: Sequence[str], default: str = NEWEST_FIRST
) -> Callable[..., Awaitable[PageParams]]:
    """A dependency parsing the keyset paging query of a list endpoint with these orderings."""
    allowed = ", ".join(orderings)

    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a costly hop here.
    async def dependency(
        request: Request,
        limit: int = Query(
            DEFAULT_LIMIT,
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
        _check_ordering(ordering, orderings)
        return PageParams(
            limit, cursor, count, ordering, str(request.url), request.app.state.cursor_key
        )

    return dependency


def page_number_params(
    orderings: Sequence[str], default: str = NEWEST_FIRST, default_size: int = DEFAULT_LIMIT
) -> Callable[..., Awaitable[PageNumberParams]]:
    """A dependency parsing the Django Automate paging query (``page``, ``page_size``)."""
    allowed = ", ".join(orderings)

    async def dependency(
        request: Request,
        page: Annotated[PageNumber, Query(description="Page number, from 1.")] = 1,
        page_size: int = Query(
            default_size,
            description=f"Page size, 1-{MAX_LIMIT}.",
            json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT},
        ),
        ordering: str = Query(
            default, description=f"One of: {allowed}.", json_schema_extra={"enum": list(orderings)}
        ),
    ) -> PageNumberParams:
        if not 1 <= page_size <= MAX_LIMIT:
            raise ValidationFailed.field("page_size", f"must be between 1 and {MAX_LIMIT}")
        _check_ordering(ordering, orderings)
        return PageNumberParams(page, page_size, str(request.url), ordering)

    return dependency


def _check_ordering(ordering: str, orderings: Sequence[str]) -> None:
    if ordering not in orderings:
        raise ValidationFailed.field("ordering", f"must be one of: {', '.join(orderings)}")


async def paginate(
    session: AsyncSession, listing: Listing[Item], params: PagingParams
) -> Window[Item]:
    """One page of ``listing`` in the form ``params`` asks for."""
    if isinstance(params, PageParams):
        return await _keyset(session, listing, params)
    if isinstance(params, OffsetParams):
        limit, offset = params.limit, params.offset
    else:
        limit, offset = params.page_size, (params.page - 1) * params.page_size
    total = await _count(session, listing)
    order = _order(listing, params.ordering)
    rows = list(
        (await session.scalars(listing.stmt.order_by(*order).offset(offset).limit(limit))).all()
    )
    if isinstance(params, OffsetParams):
        return Window(rows, count=total)
    number = params.page
    more = offset + len(rows) < total
    next_link = _with_query(params.url, "page", number + 1, absolute=True) if more else None
    previous = None
    if number > 1:
        # As Django REST framework links it: the first page is the URL without ``page``.
        previous_page = number - 1 if number > 2 else None
        previous = _with_query(params.url, "page", previous_page, absolute=True)
    return Window(rows, next_link, previous, total)


async def page_of(
    session: AsyncSession, listing: Listing[Item], params: PageParams, show: Callable[[Item], T]
) -> Page[T]:
    """``paginate``'s keyset page, each row shown through ``show``."""
    window = await paginate(session, listing, params)
    return window.page([show(row) for row in window.rows])


async def _count(session: AsyncSession, listing: Listing[Any]) -> int:
    stmt = select(func.count()).select_from(listing.stmt.order_by(None).subquery())
    return int(await session.scalar(stmt) or 0)


def _order(listing: Listing[Any], ordering: str) -> tuple[ColumnElement[Any], ...]:
    column, id_column = listing.columns[ordering.lstrip("-")], listing.id_column
    if ordering.startswith("-"):
        return column.desc(), id_column.desc()
    return column.asc(), id_column.asc()


async def _keyset(
    session: AsyncSession, listing: Listing[Item], params: PageParams
) -> Window[Item]:
    stmt, id_column = listing.stmt, listing.id_column
    column = listing.columns[params.ordering.lstrip("-")]
    total = await _count(session, listing) if params.count else None
    if params.cursor:
        ordering, raw_value, raw_id = _decode(params.cursor, params.signing_key)
        if ordering != params.ordering:
            raise ValidationFailed.field("cursor", "belongs to another ordering")
        value, last_id = _from_json(raw_value), _from_json(raw_id)
        if params.ordering.startswith("-"):
            stmt = stmt.where(or_(column < value, and_(column == value, id_column < last_id)))
        else:
            stmt = stmt.where(or_(column > value, and_(column == value, id_column > last_id)))
    order = _order(listing, params.ordering)
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
        next_link = _with_query(params.url, "cursor", _encode(values, params.signing_key))
    return Window(rows, next_link, count=total)


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


def _with_query(url: str, name: str, value: object, *, absolute: bool = False) -> str:
    """``url`` with its ``name`` parameter set to ``value`` (last) or, for None, removed; a
    path and query only unless ``absolute``."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != name]
    if value is not None:
        query.append((name, str(value)))
    scheme, host = (parts.scheme, parts.netloc) if absolute else ("", "")
    return urlunsplit((scheme, host, parts.path, urlencode(query), ""))
