"""Write events in the caller's transaction; they are announced only after it commits."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.session import signal_after_commit
from taskgate.http.context import current_trace_id
from taskgate.ids import utcnow
from taskgate.models import Event

EVENTS_COMMITTED = "events"


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
    session.add(event)
    await session.flush()
    announce_after_commit(session, event.id)
    return event
