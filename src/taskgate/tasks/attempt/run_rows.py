"""The rows a task attempt leaves behind (its run and its jobs), written with their events."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from sqlalchemy import BindParameter, Column, Table, Update, bindparam, case, func, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import utcnow
from taskgate.events.outbox import events_together, insert_with_events, record_event
from taskgate.ids import new_id
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
        "project_id": task.project_id,
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
        "project_id": task.project_id,
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
            project_id=task.project_id,
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
        project_id=task.project_id,
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
    params = {"p_task_id": task_id, "p_status": status, "p_now": utcnow(), "p_open": error}
    await session.execute(_close_runs(None), params)
    await session.execute(_close_jobs(None), params)


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
    common = {"p_task_id": task_id, "p_status": status, "p_now": utcnow(), "p_open": open_error}
    runs = {**common, "p_run_id": run_id, "p_error": error}
    for name, value in (("transcript", transcript), ("usage", usage)):
        if value is not None:
            runs[f"c_{name}"] = value
    await session.execute(_close_runs((transcript is not None, usage is not None)), runs)
    if closing is None:
        await session.execute(_close_jobs(None), common)
        return
    job_id, closed = closing
    jobs = {**common, "p_job_id": job_id, **{f"c_{name}": value for name, value in closed.items()}}
    await session.execute(_close_jobs(tuple(closed)), jobs)


# Built once per shape with bound parameters, so SQLAlchemy computes each one's cache key once
# and finds its compiled form at once: these run at the end of every task.
def _param(name: str, column: Column[Any]) -> BindParameter[Any]:
    return bindparam(name, type_=column.type)


@functools.cache
def _close_runs(attempt: tuple[bool, bool] | None) -> Update:
    """Every open run of the task; with ``attempt`` (whether a transcript and a usage are
    given), also the attempt's run, with its own error and those."""
    runs = _RUNS.c
    still_open = runs.status == OPEN
    values: dict[str, Any] = {
        "status": _param("p_status", runs.status),
        "finished_at": _param("p_now", runs.finished_at),
        "error": func.coalesce(runs.error, _param("p_open", runs.error)),
    }
    if attempt is not None:
        ours = runs.id == _param("p_run_id", runs.id)
        still_open = ours | still_open
        values["error"] = case((ours, _param("p_error", runs.error)), else_=values["error"])
        for name, wanted in zip(("transcript", "usage"), attempt, strict=True):
            if wanted:
                values[name] = case((ours, _param(f"c_{name}", runs[name])), else_=runs[name])
    task = runs.task_id == _param("p_task_id", runs.task_id)
    return update(_RUNS).where(task, still_open).values(values)


@functools.cache
def _close_jobs(closed: tuple[str, ...] | None) -> Update:
    jobs = _JOBS.c
    still_open = jobs.status == OPEN
    values: dict[str, Any] = {
        "status": _param("p_status", jobs.status),
        "finished_at": _param("p_now", jobs.finished_at),
        "error": func.coalesce(jobs.error, _param("p_open", jobs.error)),
    }
    if closed is not None:
        this = jobs.id == _param("p_job_id", jobs.id)
        still_open = this | still_open
        for name in [*values, *(name for name in closed if name not in values)]:
            mine = _param(f"c_{name}", jobs[name]) if name in closed else jobs[name]
            values[name] = case((this, mine), else_=values.get(name, jobs[name]))
    task = jobs.task_id == _param("p_task_id", jobs.task_id)
    return update(_JOBS).where(task, still_open).values(values)


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
        project_id=task.project_id,
        task_id=task.id,
        session_id=task.session_id,
        run_id=job.run_id,
        job_id=job.id,
        payload={"status": status, "kind": "model", "duration_ms": job.duration_ms, **usage},
    )
