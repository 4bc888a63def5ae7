"""Write events in the caller's transaction; they are announced only after it commits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import utcnow
from taskgate.db.bulk import Rows, insert_rows
from taskgate.db.session import signal_after_commit
from taskgate.http.context import current_trace_id
from taskgate.models import Event

EVENTS_COMMITTED = "events"
_BATCH = "event_batch"
events: Table = Event.__table__  # type: ignore[assignment]


@dataclass
class _Batch:
    events: list[tuple[Event, dict[str, Any]]] = field(default_factory=list)
    rows: list[tuple[Table, Mapping[str, Any]]] = field(default_factory=list)


def event_values(
    type: str,
    *,
    owner_id: uuid.UUID | None,
    project_id: uuid.UUID | None,
    payload: dict[str, Any] | None = None,
    task_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    execution_id: uuid.UUID | None = None,
    workflow_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
) -> dict[str, Any]:
    """An event row's columns but its id, stamped with the current trace id (every key
    present, so rows of many requests can go into one multi-row INSERT)."""
    return {
        "type": type,
        "owner_id": owner_id,
        "project_id": project_id,
        "payload": payload or {},
        "task_id": task_id,
        "run_id": run_id,
        "job_id": job_id,
        "execution_id": execution_id,
        "workflow_id": workflow_id,
        "session_id": session_id,
        "dedupe_key": dedupe_key,
        "trace_id": current_trace_id(),
        "created_at": utcnow(),
    }


def announce_after_commit(session: AsyncSession, event_id: int) -> None:
    """Tell the bus about the stored event ``event_id`` once the session commits."""
    signal_after_commit(session, EVENTS_COMMITTED, event_id)


async def record_event(
    session: AsyncSession,
    type: str,
    *,
    owner_id: uuid.UUID | None,
    project_id: uuid.UUID | None = None,
    payload: dict[str, Any] | None = None,
    task_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    execution_id: uuid.UUID | None = None,
    workflow_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    dedupe_key: str | None = None,
) -> Event:
    """Write an event in the session's transaction; it is announced once that commits."""
    values = event_values(
        type,
        owner_id=owner_id,
        project_id=project_id,
        payload=payload,
        task_id=task_id,
        run_id=run_id,
        job_id=job_id,
        execution_id=execution_id,
        workflow_id=workflow_id,
        session_id=session_id,
        dedupe_key=dedupe_key,
    )
    event = Event(**values)
    batch: _Batch | None = session.info.get(_BATCH)
    if batch is not None:
        batch.events.append((event, values))
        return event
    session.add(event)
    await session.flush()
    announce_after_commit(session, event.id)
    return event


async def insert_with_events(session: AsyncSession, table: Table, row: Mapping[str, Any]) -> None:
    """Insert ``row`` (every column with a Python-side default given, as for
    :func:`~taskgate.db.bulk.insert_rows`): inside :func:`events_together`, in the same
    statement as the block's events and before them; otherwise at once."""
    batch: _Batch | None = session.info.get(_BATCH)
    if batch is None:
        await insert_rows(session, [(table, [row])])
    else:
        batch.rows.append((table, row))


@asynccontextmanager
async def events_together(session: AsyncSession) -> AsyncIterator[None]:
    """Events recorded in this block are written when it ends, in order, in one statement
    (a unit of work that records several saves the round trip of each), together with the
    rows given to :func:`insert_with_events` (one statement for all on PostgreSQL). Until
    then the Event that :func:`record_event` returns has no id."""
    if _BATCH in session.info:  # already inside a batch: it writes these too
        yield
        return
    batch = _Batch()
    session.info[_BATCH] = batch
    try:
        yield
    finally:
        del session.info[_BATCH]
    if batch.rows:
        await _write_with_rows(session, batch)
    elif batch.events:
        ids = await session.execute(
            insert(events).returning(events.c.id, sort_by_parameter_order=True),
            [values for _, values in batch.events],
        )
        _announce(session, batch, ids.scalars())


async def _write_with_rows(session: AsyncSession, batch: _Batch) -> None:
    tables: dict[Table, list[Mapping[str, Any]]] = {}
    for table, row in batch.rows:  # in the order the tables first come (a row may refer back)
        tables.setdefault(table, []).append(row)
    written: list[Rows] = list(tables.items())
    if not batch.events:
        await insert_rows(session, written)
        return
    written.append((events, [values for _, values in batch.events]))
    ids = await insert_rows(session, written, returning=events.c.id)
    # One statement numbers its rows in order; RETURNING alone may list them in any.
    _announce(session, batch, sorted(ids))


def _announce(session: AsyncSession, batch: _Batch, ids: Iterable[int]) -> None:
    for (event, _), event_id in zip(batch.events, ids, strict=True):
        event.id = event_id
        announce_after_commit(session, event_id)
