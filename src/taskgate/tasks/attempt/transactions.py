"""Starting and ending one attempt at a task: the transactions around the work itself."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.events.outbox import events_together
from taskgate.models import Task
from taskgate.runtime.context import JobContext
from taskgate.tasks import repository as repo
from taskgate.tasks.attempt.event_batch import Subject
from taskgate.tasks.attempt.run_rows import close_attempt, close_open_work, open_job, open_run
from taskgate.tasks.lifecycle import move, task_event
from taskgate.tasks.states import TaskStatus, is_final

S = TaskStatus
LOST_ATTEMPT = "the worker running this attempt stopped before it finished"


@dataclass(frozen=True)
class Attempt:
    """What the worker needs of the task for one attempt, read when the attempt starts."""

    task_id: uuid.UUID
    owner_id: uuid.UUID
    project_id: uuid.UUID
    session_id: uuid.UUID | None
    parent_task_id: uuid.UUID | None
    run_id: uuid.UUID
    job_id: uuid.UUID
    number: int
    kind: str
    query: str | None
    input: dict[str, Any]
    context: dict[str, Any]
    acceptance_criteria: list[str]
    model_override: str | None
    max_iterations: int | None
    priority: int
    timeout_seconds: int
    created_at: datetime
    deadline: float
    resume: dict[str, Any] | None = None
    subject: Subject = field(init=False)

    def __post_init__(self) -> None:
        subject = Subject(
            self.owner_id, self.project_id, self.task_id, self.session_id, self.run_id
        )
        object.__setattr__(self, "subject", subject)

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)


async def start_attempt(ctx: JobContext, task_id: uuid.UUID) -> Attempt | None:
    """Move the task to RUNNING and open its run and first job; None when there is nothing to
    run (the task was cancelled, paused or finished meanwhile, or this queue job is stale)."""
    async with ctx.transaction(fenced=False) as session:
        task = await ctx.locked(session, repo.TASK_BY_ID, {"task_id": task_id})
        if task is None or not _runnable(task, ctx.job_id):
            await ctx.complete(session)
            return None
        if task.cancel_requested_at is not None:
            await close_open_work(session, task.id, S.CANCELLED.value, "cancelled")
            await move(session, task, S.CANCELLED, {"reason": task.cancel_reason})
            await ctx.complete(session)
            return None
        # Only an agent carries on from an earlier attempt (its saved conversation).
        previous = await repo.latest_run(session, task.id) if task.kind == "query" else None
        recovered = task.status == S.RUNNING.value
        if recovered:
            await close_open_work(session, task.id, S.FAILED.value, LOST_ATTEMPT)
        task.attempts += 1
        node_id = ctx.runtime.node_id
        async with events_together(session):
            run_id = await open_run(session, task, node_id)
            payload = {"attempt": task.attempts, "run_id": str(run_id), "node_id": node_id}
            if recovered:
                await task_event(
                    session, task, "task.started", {**payload, "recovered": True}, run_id=run_id
                )
            else:
                await move(session, task, S.RUNNING, payload, run_id=run_id)
            kind = "model" if task.kind == "query" else "sandbox"
            job_input = {"query": task.query} if task.kind == "query" else dict(task.input)
            job_id = await open_job(session, task, run_id, kind, job_input, node_id, ctx.attempt)
        resume = None
        if previous is not None and (previous.transcript or {}).get("resumable"):
            resume = dict(previous.transcript)
        return Attempt(
            task_id=task.id,
            owner_id=task.owner_id,
            project_id=task.project_id,
            session_id=task.session_id,
            parent_task_id=task.parent_task_id,
            run_id=run_id,
            job_id=job_id,
            number=task.attempts,
            kind=task.kind,
            query=task.query,
            input=dict(task.input),
            context=dict(task.context),
            acceptance_criteria=list(task.acceptance_criteria),
            model_override=task.model_override,
            max_iterations=task.max_iterations,
            priority=task.priority,
            timeout_seconds=task.timeout_seconds,
            created_at=task.created_at,
            deadline=time.monotonic() + task.timeout_seconds,
            resume=resume,
        )


def _runnable(task: Task, queue_job_id: uuid.UUID) -> bool:
    if is_final(task.status) or task.status in (S.PAUSED.value, S.WAITING_APPROVAL.value):
        return False
    # A queue job the task no longer points at (paused, then resumed with a new one) is stale.
    return task.queue_job_id is None or task.queue_job_id == queue_job_id


@dataclass
class Ending:
    """How an attempt ended, as the task and its run should record it."""

    status: TaskStatus
    result: str | None = None
    error_code: str | None = None
    error: str | None = None
    transcript: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    model_used: str | None = None
    provider: str | None = None
    event_payload: dict[str, Any] = field(default_factory=dict)


def _run_status(ending: Ending) -> str:
    if ending.status is S.QUEUED:
        return S.FAILED.value
    return ending.status.value


async def end_attempt(
    session: AsyncSession,
    task: Task,
    attempt: Attempt,
    ending: Ending,
    closing: tuple[uuid.UUID, dict[str, Any]] | None = None,
) -> None:
    """Record the ending on the run and the task, with the task's event, in ``session``;
    ``closing`` a job of the attempt and its final columns, written along with the others."""
    # Before the task changes below: they then go out with the task's event, in one flush.
    await close_attempt(
        session,
        task.id,
        attempt.run_id,
        _run_status(ending),
        error=ending.error if ending.status is not S.COMPLETED else None,
        open_error=ending.error,
        transcript=ending.transcript,
        usage=ending.usage,
        closing=closing,
    )
    if ending.usage:
        task.input_tokens += int(ending.usage.get("input_tokens", 0))
        task.output_tokens += int(ending.usage.get("output_tokens", 0))
        task.cost_usd += float(ending.usage.get("cost_usd", 0.0))
    task.model_used = ending.model_used or task.model_used
    task.provider = ending.provider or task.provider
    if ending.result is not None:
        task.result = ending.result
    payload = dict(ending.event_payload)
    if ending.status in (S.FAILED, S.TIMEOUT):
        task.error_code, task.error = ending.error_code, ending.error
        payload.update(error=ending.error, code=ending.error_code)
    elif ending.status is S.COMPLETED:
        task.error_code = task.error = None
    if ending.status is S.QUEUED:
        await move(session, task, S.QUEUED, payload, event="task.retrying", run_id=attempt.run_id)
        return
    if ending.status is S.CANCELLED:
        payload.setdefault("reason", task.cancel_reason)
    if ending.status is S.PAUSED:
        task.queue_job_id = None
    await move(session, task, ending.status, payload, run_id=attempt.run_id)
