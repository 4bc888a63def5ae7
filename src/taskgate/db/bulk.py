"""Multi-row inserts into several tables at once, for the hottest writes (accepting tasks).

On PostgreSQL the rows of every table go in one statement: each table's rows travel as one JSON
document, turned back into rows by ``jsonb_populate_recordset`` (so PostgreSQL applies the
columns' own types), in a chain of data-modifying CTEs. That is one round trip and one C-encoded
document per table, where an executemany per table would have SQLAlchemy, then asyncpg,
process every value of every row in Python (about a sixth of the API's CPU per accepted task).
Elsewhere it is SQLAlchemy's multi-row insert, one statement per table.

Both paths store the same: JSON columns as documents, UUIDs, and timestamps as the instant they
name (a timestamp without a time zone is refused, as by the column type itself). One difference:
None for a JSON column is SQL NULL here, JSON ``null`` through SQLAlchemy; the rows written this
way never carry it.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Dialect,
    Float,
    Integer,
    String,
    Table,
    TextClause,
    Uuid,
    insert,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.types import UTCDateTime

Rows = tuple[Table, Sequence[Mapping[str, Any]]]
# The column types a row document can carry faithfully.
_DOCUMENT_TYPES = (JSON, Boolean, Float, Integer, String, Uuid, UTCDateTime)


async def insert_rows(
    session: AsyncSession, tables: Sequence[Rows], returning: Column[Any] | None = None
) -> list[Any]:
    """Insert each ``(table, rows)`` in the session's transaction, in order (a row may refer
    to rows of the tables before it). Every row of a table carries the same keys. With
    ``returning``, a column of the last table, its values come back, in no particular order."""
    tables = [(table, rows) for table, rows in tables if rows]
    if not tables:
        return []
    if returning is not None and returning.table is not tables[-1][0]:
        raise ValueError("insert_rows returns a column of the last table only")
    for table, rows in tables:
        _check_defaults(table, tuple(rows[0]))
    dialect = session.bind.dialect
    if dialect.name == "postgresql":
        return await _insert_documents(session, dialect, tables, returning)
    values: list[Any] = []
    for table, rows in tables:
        if returning is not None and table is returning.table:
            stored = await session.execute(insert(table).returning(returning), list(rows))
            values = list(stored.scalars())
        else:
            await session.execute(insert(table), list(rows))
    return values


async def _insert_documents(
    session: AsyncSession, dialect: Dialect, tables: Sequence[Rows], returning: Column[Any] | None
) -> list[Any]:
    shape = tuple((table, tuple(rows[0])) for table, rows in tables)
    statement = _statement(dialect, shape, None if returning is None else returning.name)
    params = {f"rows{n}": _document(rows) for n, (_, rows) in enumerate(tables)}
    result = await session.execute(statement, params)
    return list(result.scalars()) if returning is not None else []


def _document(rows: Sequence[Mapping[str, Any]]) -> str:
    # orjson writes uuid.UUID itself; timestamps (to be checked) and other UUID types, such as
    # asyncpg's, come to _value.
    try:
        document = orjson.dumps(rows, default=_value, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except orjson.JSONEncodeError as error:
        raise (error.__cause__ or error) from None  # a naive timestamp says so
    return document.decode()


def _value(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@functools.lru_cache(maxsize=64)
def _statement(
    dialect: Dialect, shape: tuple[tuple[Table, tuple[str, ...]], ...], returning: str | None
) -> TextClause:
    inserts = [_insert(dialect, n, table, keys) for n, (table, keys) in enumerate(shape)]
    *before, last = inserts
    sql = "".join(f"{'WITH' if n == 0 else ','} w{n} AS ({part}) " for n, part in enumerate(before))
    sql += last
    if returning is not None:
        sql += f" RETURNING {dialect.identifier_preparer.quote(returning)}"
    return text(sql)


def _insert(dialect: Dialect, n: int, table: Table, keys: tuple[str, ...]) -> str:
    quote = dialect.identifier_preparer.quote
    odd = [key for key in keys if not isinstance(table.c[key].type, _DOCUMENT_TYPES)]
    if odd:
        raise TypeError(f"{table.name}.{odd[0]}: a column type row documents do not carry")
    columns = ", ".join(quote(key) for key in keys)
    # Names come from the table's metadata; the rows are one bound parameter.
    into = f"INSERT INTO {quote(table.name)} ({columns})"
    rows = f"jsonb_populate_recordset(NULL::{quote(table.name)}, CAST(:rows{n} AS JSONB))"
    return f"{into} SELECT {columns} FROM {rows}"  # noqa: S608


@functools.lru_cache(maxsize=64)
def _check_defaults(table: Table, keys: tuple[str, ...]) -> None:
    """A column left out would get no Python-side default on PostgreSQL: refuse, loudly and on
    every database alike."""
    missing = [
        column.name for column in table.c if column.name not in keys and column.default is not None
    ]
    if missing:
        raise ValueError(f"rows for {table.name} lack {', '.join(missing)} (defaults in Python)")
