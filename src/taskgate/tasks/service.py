"""Task use cases: submit, read, and control (cancel, pause, resume)."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit, audit_values
from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.errors import Conflict, FieldProblem, NotFound, ValidationFailed
from taskgate.events.outbox import event_values
from taskgate.governance.access import authorize
from taskgate.http.pagination import OffsetParams, Page, PageParams, paginate
from taskgate.ids import new_id
from taskgate.models import ChatSession, Event, Task
from taskgate.runtime.queue import NewJob, job_values, request_cancel
from taskgate.settings import Settings, WorkerSettings
from taskgate.tasks import repository as repo
from taskgate.tasks.intake import Accepted, TaskIntake, TaskRows, stage
from taskgate.tasks.lifecycle import RUN_KIND, enqueue_run, fail, move, stop_running, task_event
from taskgate.tasks.schemas import ControlState, TaskCreate, TaskFilters, TaskList, TaskOut
from taskgate.tasks.states import TaskStatus

S = TaskStatus
MODEL_UNAVAILABLE_MESSAGE = (
    "No model is configured, so text tasks cannot run. Point taskgate at an OpenAI-compatible "
    "server with TASKGATE_MODEL__BASE_URL (for example http://127.0.0.1:11434/v1 for Ollama), "
    "plus TASKGATE_MODEL__MODEL and TASKGATE_MODEL__API_KEY where needed, and restart it. "
    "Scripts and commands work without a model."
)
_INPUTS = ("query", "script", "commands")


def _check_one_input(body: TaskCreate) -> str:
    given = [name for name in _INPUTS if getattr(body, name) is not None]
    if len(given) == 1:
        return given[0]
    if given:
        message = f"send only one of query, script or commands (got {', '.join(given)})"
        problems = [FieldProblem(name, message) for name in given]
    else:
        message = "send one of query, script or commands"
        problems = [FieldProblem(name, message) for name in _INPUTS]
    raise ValidationFailed(message[0].upper() + message[1:] + ".", details=problems)


async def _chat_session(
    session: AsyncSession, principal: Principal, session_id: uuid.UUID
) -> ChatSession | None:
    """The principal's session ``session_id``; None when it is yet to be made."""
    existing = await repo.session_of(session, session_id)
    if existing is not None and existing.owner_id != principal.user_id:
        raise NotFound("Session not found.")
    return existing


def _title(body: TaskCreate) -> str:
    if body.query is not None:
        return " ".join(body.query.split())[:80]
    if body.script is not None:
        return f"{body.script.language} script"
    return (body.commands or [""])[0][:80]


@dataclass(frozen=True)
class _Submission:
    """A checked submission; ``make`` builds its rows in the accepting request's context (trace
    id, client address) given whether its chat session must be created."""

    principal: Principal
    session_id: uuid.UUID
    given_session: bool
    runnable: bool
    make: Callable[[bool], TaskRows]
    context: contextvars.Context

    async def build(self, session: AsyncSession) -> TaskRows:
        new_session = not self.given_session
        if self.given_session:
            new_session = await _chat_session(session, self.principal, self.session_id) is None
        return self.context.run(self.make, new_session)


def prepare_task(principal: Principal, body: TaskCreate, settings: Settings) -> _Submission:
    """Check a submission and describe what accepting it writes."""
    project_id = authorize(principal, "task:create")
    kind = _check_one_input(body)
    session_id = body.session_id or new_id()
    runnable = kind != "query" or settings.model.base_url is not None
    task_input: dict[str, object] = {}
    if body.script is not None:
        task_input = {"script": body.script.model_dump()}
    elif body.commands is not None:
        task_input = {"commands": list(body.commands)}
    task_id, job_id, now = new_id(), new_id() if runnable else None, utcnow()
    timeout = body.timeout_seconds or settings.sandbox.default_timeout_seconds
    labels = list(dict.fromkeys(body.labels))
    title = _title(body)[:200] or None

    def rows(new_session: bool) -> TaskRows:
        task: dict[str, Any] = {
            "id": task_id,
            "owner_id": principal.user_id,
            "project_id": project_id,
            "session_id": session_id,
            "kind": kind,
            "status": S.QUEUED.value,
            "query": body.query,
            "input": task_input,
            "attachments": [str(a) for a in body.attachments],
            "acceptance_criteria": list(body.acceptance_criteria),
            "context": body.context,
            "labels": labels,
            "mode": body.mode,
            "model_tier": body.model_tier,
            "model_override": body.model_override,
            "provider_override": body.provider_override,
            "max_iterations": body.max_iterations,
            "timeout_seconds": timeout,
            "priority": body.priority,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": 0.0,
            "attempts": 0,
            "queue_job_id": job_id,
            "created_at": now,
            "updated_at": now,
        }
        chat: dict[str, Any] = {
            "id": session_id,
            "owner_id": principal.user_id,
            "project_id": project_id,
            "title": title,
            "context": {},
            "created_at": now,
            "updated_at": now,
        }
        run = NewJob(RUN_KIND, {"task_id": str(task_id)}, body.priority, job_id=job_id)
        return TaskRows(
            task=task,
            event=event_values(
                "task.created",
                owner_id=principal.user_id,
                project_id=project_id,
                task_id=task_id,
                session_id=session_id,
                payload={"kind": kind, "status": S.QUEUED.value, "labels": labels},
            ),
            audit=audit_values(
                "task.create",
                principal,
                resource_type="task",
                resource_id=task_id,
                outcome="success",
                detail={"kind": kind},
                actor_name=None,
            ),
            job=job_values(run) if job_id is not None else None,
            chat=chat if new_session else None,
        )

    given = body.session_id is not None
    return _Submission(principal, session_id, given, runnable, rows, contextvars.copy_context())


async def submit_task(
    session: AsyncSession, principal: Principal, body: TaskCreate, settings: Settings
) -> Accepted:
    """Accept a task in the caller's transaction: its session, the task, its audit record, its
    queue job and its task.created event. A text task with no model configured fails at once
    (MODEL_UNAVAILABLE)."""
    return await _write(session, prepare_task(principal, body, settings))


async def accept_task(
    db: Database,
    intake: TaskIntake | None,
    principal: Principal,
    body: TaskCreate,
    settings: Settings,
) -> Accepted:
    """Accept a task for the API: by group commit with concurrent submissions when the
    process has an intake, else in a transaction of its own; returned once committed."""
    submission = prepare_task(principal, body, settings)
    if intake is not None and submission.runnable:
        return await intake.store(submission)
    async with db.transaction() as session:
        return await _write(session, submission)


async def _write(session: AsyncSession, submission: _Submission) -> Accepted:
    rows = await submission.build(session)
    await stage(session, [rows])
    if submission.runnable:
        return rows.accepted()
    task = await session.get(Task, rows.task["id"])
    assert task is not None
    await fail(session, task, "MODEL_UNAVAILABLE", MODEL_UNAVAILABLE_MESSAGE)
    return Accepted(task.id, rows.task["session_id"], task.status, task.created_at, task.error)


def _authorized(principal: Principal, permission: str, task: Task | None) -> Task:
    """``task`` if ``principal`` may ``permission`` it: 404 when it is missing or in a project
    ``principal`` cannot see, 403 when it may not (a member changes only its own)."""
    if task is None:
        raise NotFound("Task not found.")
    owner, project = task.owner_id, task.project_id
    authorize(principal, permission, project_id=project, owner_id=owner, resource_id=task.id)
    return task


async def get_task(session: AsyncSession, principal: Principal, task_id: uuid.UUID) -> Task:
    return _authorized(principal, "task:read", await session.get(Task, task_id))


async def list_tasks(
    session: AsyncSession,
    principal: Principal,
    filters: TaskFilters,
    paging: PageParams | OffsetParams,
) -> Page[TaskOut] | TaskList:
    """The tasks of the request's project, everyone's (``task:read`` reads them all); the
    Shannon form with OffsetParams."""
    project_id = authorize(principal, "task:read")
    listing = repo.tasks_listing(project_id, filters, repo.dialect_of(session))
    window = await paginate(session, listing, paging)
    results = [TaskOut.of(task) for task in window.rows]
    if isinstance(paging, OffsetParams):
        return TaskList(tasks=results, total_count=window.count or 0)
    return window.page(results)


async def _task_to_change(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, permission: str
) -> Task:
    return _authorized(principal, permission, await repo.task_for_update(session, task_id))


async def list_events(
    session: AsyncSession,
    principal: Principal,
    task_id: uuid.UUID,
    *,
    after: int | None,
    limit: int,
    types: Sequence[str],
) -> tuple[list[Event], bool]:
    """Events of the task in order, after ``after``; the flag says whether more follow."""
    task = await get_task(session, principal, task_id)
    rows = await repo.task_events(session, task.id, after=after, limit=limit + 1, types=types)
    return rows[:limit], len(rows) > limit


async def cancel_task(
    session: AsyncSession,
    principal: Principal,
    task_id: uuid.UUID,
    reason: str | None,
    settings: Settings | None = None,
) -> str:
    """Cancel now when nothing runs; a running task is stopped by its worker within a second.
    ``settings`` tell how long worker leases last (for the fallback when a worker died)."""
    task = await _task_to_change(session, principal, task_id, "task:cancel")
    status = TaskStatus(task.status)
    detail = {"reason": reason, "by": principal.username}
    if status is S.RUNNING:
        if task.cancel_requested_at is not None:
            return "Cancellation was already requested."
        await stop_running(
            session,
            task,
            reason=reason,
            by=principal.username,
            lease_seconds=(settings.worker if settings else WorkerSettings()).lease_seconds,
        )
        message = "Cancellation requested; the task stops within a second."
    else:
        task.cancel_reason, task.cancelled_by = reason, principal.username
        await move(session, task, S.CANCELLED, detail)
        if status is S.QUEUED and task.queue_job_id is not None:
            await request_cancel(session, task.queue_job_id)
        message = "Task cancelled."
    await audit(session, "task.cancel", principal, resource_type="task", resource_id=task.id)
    return message


async def pause_task(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, reason: str | None
) -> str:
    task = await _task_to_change(session, principal, task_id, "task:pause")
    status = TaskStatus(task.status)
    detail = {"reason": reason, "by": principal.username}
    if status is S.RUNNING:
        if task.kind != "query":
            raise Conflict("A running script or command task cannot be paused; cancel it instead.")
        if task.cancel_requested_at is not None:
            raise Conflict("The task is being cancelled.")
        task.pause_requested_at = utcnow()
        task.pause_reason, task.paused_by = reason, principal.username
        await task_event(session, task, "task.pause_requested", detail)
        message = "Pause requested; the task pauses at its next step."
    else:
        await move(session, task, S.PAUSED, detail)
        task.pause_reason, task.paused_by = reason, principal.username
        if task.queue_job_id is not None:
            await request_cancel(session, task.queue_job_id)
            task.queue_job_id = None
        message = "Task paused."
    await audit(session, "task.pause", principal, resource_type="task", resource_id=task.id)
    return message


async def resume_task(
    session: AsyncSession, principal: Principal, task_id: uuid.UUID, reason: str | None
) -> str:
    task = await _task_to_change(session, principal, task_id, "task:resume")
    status = TaskStatus(task.status)
    if status is S.RUNNING and task.pause_requested_at is not None:
        task.pause_requested_at = None
        task.pause_reason = task.paused_by = None
        await task_event(session, task, "task.pause_withdrawn", {"by": principal.username})
        message = "The pending pause was withdrawn; the task keeps running."
    else:
        if status is not S.PAUSED:
            raise Conflict(f"Cannot resume a task that is {status.value}.")
        await move(
            session,
            task,
            S.QUEUED,
            {"reason": reason, "by": principal.username},
            event="task.resumed",
        )
        task.pause_reason = task.paused_by = None
        await enqueue_run(session, task)
        message = "Task resumed."
    await audit(session, "task.resume", principal, resource_type="task", resource_id=task.id)
    return message


def control_state(task: Task) -> ControlState:
    return ControlState(
        status=task.status,
        is_paused=task.status == S.PAUSED.value,
        is_cancelled=task.status == S.CANCELLED.value,
        pause_requested=task.pause_requested_at is not None,
        cancel_requested=task.cancel_requested_at is not None,
        paused_at=task.paused_at,
        pause_reason=task.pause_reason,
        paused_by=task.paused_by,
        cancel_reason=task.cancel_reason,
        cancelled_by=task.cancelled_by,
    )


@dataclass(frozen=True)
class ApprovalDecision:
    approved: bool
    reason: str = ""
    decided_by: str | None = None


async def resume_after_approval(
    session: AsyncSession, task: Task, decision: ApprovalDecision
) -> None:
    """Record the decision on the tool call the task waits for and queue it again; the agent
    then gets the decision as that call's approval and carries on from its transcript."""
    if task.status != S.WAITING_APPROVAL.value:
        raise Conflict(f"The task is {task.status}, not waiting for an approval.")
    run = await repo.latest_run(session, task.id)
    pending = (run.transcript or {}).get("pending") if run is not None else None
    if run is None or not pending:
        raise Conflict("The task is not waiting for an approval.")
    run.transcript = {
        **run.transcript,
        "decision": {
            "call_id": pending["call_id"],
            "approved": decision.approved,
            "reason": decision.reason,
            "decided_by": decision.decided_by,
        },
    }
    await move(
        session,
        task,
        S.QUEUED,
        {"approved": decision.approved, "reason": decision.reason, "by": decision.decided_by},
        event="task.resumed",
        run_id=run.id,
    )
    await enqueue_run(session, task)
