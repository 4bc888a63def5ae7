"""State changes with their events, and queueing a task for a worker: shared by the API's use
cases and the worker's task runner, so both move tasks the same way."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import utcnow
from taskgate.events.outbox import record_event
from taskgate.ids import new_id
from taskgate.models import Event, Task
from taskgate.runtime.queue import enqueue, request_cancel
from taskgate.tasks.states import EVENT_OF, TaskStatus, transition

RUN_KIND = "task.run"


async def task_event(
    session: AsyncSession,
    task: Task,
    type: str,
    payload: dict[str, Any] | None = None,
    **ids: Any,
) -> Event:
    """An event about ``task``, with its owner and session filled in."""
    return await record_event(
        session,
        type,
        owner_id=task.owner_id,
        project_id=task.project_id,
        task_id=task.id,
        session_id=task.session_id,
        payload=payload,
        **ids,
    )


async def move(
    session: AsyncSession,
    task: Task,
    to: TaskStatus,
    payload: dict[str, Any] | None = None,
    *,
    event: str | None = None,
    **ids: Any,
) -> Event:
    """Transition ``task`` (409 if illegal) and record the event announcing it."""
    transition(task, to)
    body = {"status": to.value, **(payload or {})}
    return await task_event(session, task, event or EVENT_OF[to], body, **ids)


async def fail(session: AsyncSession, task: Task, code: str, message: str, **ids: Any) -> Event:
    task.error_code = code
    task.error = message
    return await move(session, task, TaskStatus.FAILED, {"error": message, "code": code}, **ids)


async def enqueue_run(session: AsyncSession, task: Task, run_after: datetime | None = None) -> None:
    """Hand the task to a worker: a queue job written in the caller's transaction."""
    job_id = new_id()
    task.queue_job_id = job_id
    await enqueue(
        session,
        RUN_KIND,
        {"task_id": str(task.id)},
        priority=task.priority,
        run_after=run_after,
        job_id=job_id,
    )


async def stop_running(
    session: AsyncSession, task: Task, *, reason: str | None, by: str, lease_seconds: float
) -> None:
    """Ask the worker running the task to cancel it (within a second). Should that worker be
    dead, its queue job just ends cancelled once the lease expires, so a follow-up job, due
    after that, finishes the cancellation."""
    now = utcnow()
    task.cancel_requested_at, task.cancel_reason, task.cancelled_by = now, reason, by
    if task.queue_job_id is not None:
        await request_cancel(session, task.queue_job_id)
    await enqueue_run(session, task, run_after=now + timedelta(seconds=2 * lease_seconds + 5))
    await task_event(session, task, "task.cancel_requested", {"reason": reason, "by": by})
