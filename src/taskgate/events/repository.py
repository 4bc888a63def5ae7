"""Event queries: the tail every API process follows, and a stream's replay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, func, or_, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.events.filters import StreamSpec
from taskgate.events.visibility import EVERY_EVENT, SUBJECT_FAMILIES
from taskgate.events.wire import EventRecord
from taskgate.models import Event

_COLUMNS = (
    Event.id,
    Event.type,
    Event.owner_id,
    Event.created_at,
    Event.payload,
    Event.task_id,
    Event.run_id,
    Event.job_id,
    Event.execution_id,
    Event.workflow_id,
    Event.session_id,
    Event.project_id,
)


def _record(row: Row[Any]) -> EventRecord:
    return EventRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4] if row[4] is not None else {},
        task_id=row[5],
        run_id=row[6],
        job_id=row[7],
        execution_id=row[8],
        workflow_id=row[9],
        session_id=row[10],
        project_id=row[11],
    )


async def max_event_id(session: AsyncSession) -> int:
    value = await session.scalar(select(func.max(Event.id)))
    return int(value or 0)


async def events_after(session: AsyncSession, after: int, limit: int) -> list[EventRecord]:
    """Every project's events past ``after``: one read that serves all of a process's
    streams."""
    stmt = select(*_COLUMNS).where(Event.id > after).order_by(Event.id).limit(limit)
    return [_record(row) for row in await session.execute(stmt)]


async def ids_after(session: AsyncSession, after: int, limit: int) -> list[int]:
    """The same read when nobody listens: only the ids, to keep the watermark moving."""
    stmt = select(Event.id).where(Event.id > after).order_by(Event.id).limit(limit)
    return list((await session.scalars(stmt)).all())


# SQL for ``visibility.event_family``.
_FAMILY = case(
    *(
        (or_(*(getattr(Event, column).is_not(None) for column in columns)), family)
        for columns, family in SUBJECT_FAMILIES
    ),
    else_=EVERY_EVENT,
)


def spec_clause(spec: StreamSpec) -> ColumnElement[bool]:
    """SQL for ``spec.wants``: its project, its subject and types, or an event that ends it."""
    conditions: list[ColumnElement[bool]] = []
    if spec.readable is not None:
        conditions.append(_FAMILY.in_(sorted(spec.readable)))
    for column, value in spec.equals:
        conditions.append(getattr(Event, column) == value)
    for column in spec.present:
        conditions.append(getattr(Event, column).is_not(None))
    if spec.types is not None:
        kinds: list[ColumnElement[bool]] = []
        if spec.types.exact:
            kinds.append(Event.type.in_(sorted(spec.types.exact)))
        kinds.extend(
            Event.type.startswith(prefix, autoescape=True) for prefix in spec.types.prefixes
        )
        conditions.append(or_(*kinds))
    wanted: ColumnElement[bool] = and_(true(), *conditions)
    ends = [
        and_(getattr(Event, end.column) == end.value, Event.type.in_(sorted(end.types)))
        for end in spec.ends
    ]
    if ends:
        wanted = or_(wanted, *ends)
    return and_(Event.project_id == spec.project_id, wanted)


async def backlog(
    session: AsyncSession, spec: StreamSpec, *, after: int, upto: int, limit: int
) -> list[EventRecord]:
    stmt = (
        select(*_COLUMNS)
        .where(spec_clause(spec), Event.id > after, Event.id <= upto)
        .order_by(Event.id)
        .limit(limit)
    )
    return [_record(row) for row in await session.execute(stmt)]


async def ending_type(session: AsyncSession, spec: StreamSpec, *, upto: int) -> str | None:
    """The type of the event that ended the subject at or before ``upto``, if one did: a
    client resuming past the end gets ``done`` at once instead of waiting forever."""
    ends = [
        and_(getattr(Event, end.column) == end.value, Event.type.in_(sorted(end.types)))
        for end in spec.ends
    ]
    if not ends:
        return None
    stmt = (
        select(Event.type)
        .where(Event.project_id == spec.project_id, or_(*ends), Event.id <= upto)
        .order_by(Event.id)
        .limit(1)
    )
    found: str | None = await session.scalar(stmt)
    return found


_WRITERS = text(
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation' "
    "AND relation = CAST(:table AS regclass) AND mode = 'RowExclusiveLock' AND granted "
    "AND pid IS DISTINCT FROM pg_backend_pid()"
)


async def open_writers(session: AsyncSession) -> frozenset[str]:
    """PostgreSQL: the transactions now able to insert events (they hold RowExclusiveLock on
    the table from before they draw an id until they end). Once every transaction that was
    open when a gap in ids appeared has ended, the gap is final: its id was rolled back."""
    rows: Sequence[Any] = (await session.execute(_WRITERS, {"table": Event.__tablename__})).all()
    return frozenset(str(row[0]) for row in rows)
