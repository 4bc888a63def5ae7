"""Write events in the caller's transaction; they are announced only after it commits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.session import signal_after_commit
from taskgate.http.context import current_trace_id
from taskgate.ids import utcnow
from taskgate.models import Event

EVENTS_COMMITTED = "events"
_BATCH = "event_batch"
events: Table = Event.__table__  # type: ignore[assignment]


def event_values(
    type: str,
    *,
    owner_id: uuid.UUID | None,
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
    batch: list[tuple[Event, dict[str, Any]]] | None = session.info.get(_BATCH)
    if batch is not None:
        batch.append((event, values))
        return event
    session.add(event)
    await session.flush()
    announce_after_commit(session, event.id)
    return event


@asynccontextmanager
async def events_together(session: AsyncSession) -> AsyncIterator[None]:
    """Events recorded in this block are written when it ends, in order, in one statement
    (a unit of work that records several saves the round trip of each). Until then the
    Event that :func:`record_event` returns has no id."""
    if _BATCH in session.info:  # already inside a batch: it writes these too
        yield
        return
    batch: list[tuple[Event, dict[str, Any]]] = []
    session.info[_BATCH] = batch
    try:
        yield
    finally:
        del session.info[_BATCH]
    if not batch:
        return
    ids = await session.execute(
        insert(events).returning(events.c.id, sort_by_parameter_order=True),
        [values for _, values in batch],
    )
    for (event, _), event_id in zip(batch, ids.scalars(), strict=True):
        event.id = event_id
        announce_after_commit(session, event_id)
