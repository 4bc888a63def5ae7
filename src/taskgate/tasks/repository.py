"""Task queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, Uuid, bindparam, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.http.pagination import Listing
from taskgate.models import ChatSession, Event, Run, Task
from taskgate.tasks.schemas import TaskFilters


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


# The task, read afresh (not from the session's identity map); built once, as the worker reads
# a task so at both ends of every attempt. Run it with {"task_id": ...}.
TASK_BY_ID: Select[tuple[Task]] = (
    select(Task)
    .where(Task.id == bindparam("task_id", type_=Uuid()))
    .execution_options(populate_existing=True)
)


async def task_for_update(session: AsyncSession, task_id: uuid.UUID) -> Task | None:
    """The task, locked against concurrent changes until the transaction ends (PostgreSQL;
    SQLite write transactions are serialised already)."""
    stmt = TASK_BY_ID.with_for_update() if dialect_of(session) == "postgresql" else TASK_BY_ID
    result: Task | None = await session.scalar(stmt, {"task_id": task_id})
    return result


async def session_of(session: AsyncSession, session_id: uuid.UUID) -> ChatSession | None:
    return await session.get(ChatSession, session_id)


def _label_matches(label: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return Task.labels.op("@>")(literal([label], JSONB))
    each = func.json_each(Task.labels).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == label))


def tasks_listing(project_id: uuid.UUID, filters: TaskFilters, dialect: str) -> Listing[Task]:
    stmt = select(Task).where(Task.project_id == project_id)
    if filters.statuses:
        stmt = stmt.where(Task.status.in_(filters.statuses))
    if filters.session_id is not None:
        stmt = stmt.where(Task.session_id == filters.session_id)
    if filters.parent_task_id is not None:
        stmt = stmt.where(Task.parent_task_id == filters.parent_task_id)
    if filters.label:
        stmt = stmt.where(_label_matches(filters.label, dialect))
    if filters.created_after is not None:
        stmt = stmt.where(Task.created_at > filters.created_after)
    if filters.created_before is not None:
        stmt = stmt.where(Task.created_at < filters.created_before)
    if filters.search:
        pattern = "%" + filters.search.replace("\\", "\\\\").replace("%", "\\%") + "%"
        stmt = stmt.where(Task.query.ilike(pattern, escape="\\"))
    return Listing(stmt, {"created_at": Task.created_at}, Task.id)


async def task_events(
    session: AsyncSession,
    task_id: uuid.UUID,
    *,
    after: int | None,
    limit: int,
    types: Sequence[str] = (),
) -> list[Event]:
    stmt = select(Event).where(Event.task_id == task_id)
    if after is not None:
        stmt = stmt.where(Event.id > after)
    if types:
        stmt = stmt.where(Event.type.in_(types))
    rows = await session.scalars(stmt.order_by(Event.id).limit(limit))
    return list(rows.all())


async def latest_run(session: AsyncSession, task_id: uuid.UUID) -> Run | None:
    result: Run | None = await session.scalar(
        select(Run).where(Run.task_id == task_id).order_by(Run.attempt.desc()).limit(1)
    )
    return result


async def session_turns(
    session: AsyncSession, session_id: uuid.UUID, before: datetime, limit: int
) -> list[tuple[str, str]]:
    """The latest completed text turns of a session before ``before``, oldest first."""
    rows = await session.execute(
        select(Task.query, Task.result)
        .where(
            Task.session_id == session_id,
            Task.kind == "query",
            Task.status == "COMPLETED",
            Task.parent_task_id.is_(None),
            Task.created_at < before,
        )
        .order_by(Task.created_at.desc())
        .limit(limit)
    )
    turns = [(query or "", result or "") for query, result in rows.all()]
    return list(reversed(turns))
