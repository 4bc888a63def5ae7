"""The rows a task attempt leaves behind (its run and its jobs), written with their events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Table, case, func, literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.events.outbox import events_together, insert_with_events, record_event
from taskgate.ids import new_id, utcnow
from taskgate.models import Run, Task, TaskJob
from taskgate.runtime.sandbox import SandboxResult

OPEN = "RUNNING"
_RUNS: Table = Run.__table__  # type: ignore[assignment]
_JOBS: Table = TaskJob.__table__  # type: ignore[assignment]


async def open_run(session: AsyncSession, task: Task, node_id: str | None) -> uuid.UUID:
    """Open the task's next run, written with the events of the enclosing
    :func:`~taskgate.events.outbox.events_together` block; returns its id."""
    now = utcnow()
    run_id = new_id()
    row: dict[str, Any] = {
        "id": run_id,
        "owner_id": task.owner_id,
        "task_id": task.id,
        "session_id": task.session_id,
        "parent_run_id": task.parent_run_id,
        "name": f"{task.kind} task attempt {task.attempts}",
        "kind": "subagent" if task.parent_task_id else "task",
        "status": OPEN,
        "attempt": task.attempts,
        "node_id": node_id,
        "transcript": {},
        "usage": {},
        "started_at": now,
        "created_at": now,
        "updated_at": now,
    }
    await insert_with_events(session, _RUNS, row)
    return run_id


async def open_job(
    session: AsyncSession,
    task: Task,
    run_id: uuid.UUID,
    kind: str,
    job_input: dict[str, Any],
    node_id: str | None,
    attempts: int = 1,
) -> uuid.UUID:
    """Open a job of the run, with its job.started event; returns its id."""
    now = utcnow()
    job_id = new_id()
    row: dict[str, Any] = {
        "id": job_id,
        "owner_id": task.owner_id,
        "task_id": task.id,
        "run_id": run_id,
        "kind": kind,
        "status": OPEN,
        "input": job_input,
        "output_bytes": 0,
        "output_truncated": False,
        "attempts": attempts,
        "node_id": node_id,
        "started_at": now,
        "created_at": now,
        "updated_at": now,
    }
    async with events_together(session):
        await insert_with_events(session, _JOBS, row)
        await record_event(
            session,
            "job.started",
            owner_id=task.owner_id,
            task_id=task.id,
            session_id=task.session_id,
            run_id=run_id,
            job_id=job_id,
            payload={"kind": kind, "input": job_input, "node_id": node_id},
        )
    return job_id


def sandbox_job_status(result: SandboxResult) -> str:
    if result.outcome == "timeout":
        return "TIMEOUT"
    if result.outcome == "cancelled":
        return "CANCELLED"
    return "COMPLETED" if result.exit_code == 0 else "FAILED"


def closed_sandbox_job(result: SandboxResult) -> dict[str, Any]:
    """The columns of a sandbox job that ended with ``result``."""
    return {
        "status": sandbox_job_status(result),
        "exit_code": result.exit_code,
        "output_excerpt": result.output_excerpt,
        "output_bytes": result.output_bytes,
        "output_truncated": result.output_truncated,
        "output_path": str(result.output_path) if result.output_path else None,
        "finished_at": utcnow(),
        "duration_ms": round(result.duration_seconds * 1000),
        **({} if result.outcome == "exited" else {"error": _outcome_text(result)}),
    }


async def close_sandbox_job(
    session: AsyncSession, task: Task, job_id: uuid.UUID, result: SandboxResult
) -> None:
    closed = closed_sandbox_job(result)
    # One statement rather than a load and a flush.
    stmt = update(TaskJob).where(TaskJob.id == job_id).values(closed).returning(TaskJob.run_id)
    run_id = (await session.execute(stmt)).scalar_one()
    await record_sandbox_job_closed(session, task, run_id, job_id, result, closed)


async def record_sandbox_job_closed(
    session: AsyncSession,
    task: Task,
    run_id: uuid.UUID | None,
    job_id: uuid.UUID,
    result: SandboxResult,
    closed: dict[str, Any],
) -> None:
    """The job.completed event of a sandbox job closed with ``closed``."""
    await record_event(
        session,
        "job.completed",
        owner_id=task.owner_id,
        task_id=task.id,
        session_id=task.session_id,
        run_id=run_id,
        job_id=job_id,
        payload={
            "status": closed["status"],
            "kind": "sandbox",
            "exit_code": result.exit_code,
            "outcome": result.outcome,
            "duration_ms": closed["duration_ms"],
            "output_bytes": result.output_bytes,
            "truncated": result.output_truncated,
        },
    )


def _outcome_text(result: SandboxResult) -> str:
    if result.outcome == "killed":
        return f"killed by signal {result.signal}"
    return result.outcome


async def close_open_work(
    session: AsyncSession, task_id: uuid.UUID, status: str, error: str | None
) -> None:
    """Close every run and job of the task still marked running (an attempt that died, or
    the one being cancelled), so nothing stays RUNNING under a final task."""
    now = utcnow()
    await session.execute(
        update(Run)
        .where(Run.task_id == task_id, Run.status == OPEN)
        .values(status=status, finished_at=now, error=func.coalesce(Run.error, error))
    )
    await session.execute(
        update(TaskJob)
        .where(TaskJob.task_id == task_id, TaskJob.status == OPEN)
        .values(status=status, finished_at=now, error=func.coalesce(TaskJob.error, error))
    )


async def close_attempt(
    session: AsyncSession,
    task_id: uuid.UUID,
    run_id: uuid.UUID,
    status: str,
    *,
    error: str | None,
    open_error: str | None,
    transcript: dict[str, Any] | None = None,
    usage: dict[str, Any] | None = None,
    closing: tuple[uuid.UUID, dict[str, Any]] | None = None,
) -> None:
    """Close the attempt's run with its ``error``, ``transcript`` and ``usage``, and as
    :func:`close_open_work` does, with ``open_error``, every other run or job of the task
    still marked running: two statements, one per table. ``closing`` is a job of the attempt
    and its columns (as from :func:`closed_sandbox_job`), set in the same statement."""
    now = utcnow()
    ours = Run.id == run_id
    values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "error": case((ours, _typed(error, Run.error)), else_=func.coalesce(Run.error, open_error)),
    }
    for name, value in (("transcript", transcript), ("usage", usage)):
        if value is not None:
            column = Run.__table__.c[name]
            values[name] = case((ours, _typed(value, column)), else_=column)
    await session.execute(
        update(Run).where(Run.task_id == task_id, ours | (Run.status == OPEN)).values(values)
    )
    still_open = TaskJob.status == OPEN
    job_values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "error": func.coalesce(TaskJob.error, open_error),
    }
    if closing is not None:
        job_id, closed = closing
        this = TaskJob.id == job_id
        still_open = this | still_open
        for name in [*job_values, *(name for name in closed if name not in job_values)]:
            column = _JOBS.c[name]
            mine = _typed(closed[name], column) if name in closed else column
            job_values[name] = case((this, mine), else_=job_values.get(name, column))
    await session.execute(
        update(TaskJob).where(TaskJob.task_id == task_id, still_open).values(job_values)
    )


def _typed(value: Any, column: Any) -> Any:
    return literal(value, type_=column.type)


async def close_model_job(
    session: AsyncSession,
    task: Task,
    job_id: uuid.UUID,
    status: str,
    output: str,
    usage: dict[str, Any],
    error: str | None,
    excerpt_cap: int,
) -> None:
    job = await session.get(TaskJob, job_id)
    assert job is not None
    now = utcnow()
    encoded = output.encode()
    job.status = status
    job.output_excerpt = encoded[:excerpt_cap].decode(errors="ignore")
    job.output_bytes = len(encoded)
    job.output_truncated = len(encoded) > excerpt_cap
    job.error = error
    job.finished_at = now
    if job.started_at is not None:
        job.duration_ms = round((now - job.started_at).total_seconds() * 1000)
    await record_event(
        session,
        "job.completed",
        owner_id=task.owner_id,
        task_id=task.id,
        session_id=task.session_id,
        run_id=job.run_id,
        job_id=job.id,
        payload={"status": status, "kind": "model", "duration_ms": job.duration_ms, **usage},
    )
