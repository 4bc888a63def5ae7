"""What a firing starts (a task, or a workflow execution) and how those runs are doing."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.errors import FieldProblem, NotFound, TaskgateError, ValidationFailed
from taskgate.http.errors import validation_problems
from taskgate.models import Schedule, ScheduleRun, Task, WorkflowExecution
from taskgate.schedules.definition import task_body
from taskgate.settings import Settings
from taskgate.tasks.intake import TaskRows, stage
from taskgate.tasks.schemas import TaskCreate
from taskgate.tasks.service import prepare_task, submit_task
from taskgate.tasks.states import FINAL as TASK_FINAL
from taskgate.workflows.definitions.service import authorized_workflow
from taskgate.workflows.executions.service import start_execution

# Execution statuses that will not change again (API.md: QUEUED, RUNNING, WAITING, SUCCESS,
# FAILED, CANCELLED).
EXECUTION_FINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
GONE = "DELETED"


@dataclass(frozen=True)
class Started:
    task_id: uuid.UUID | None = None
    execution_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Progress:
    status: str
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status in TASK_FINAL or self.status in EXECUTION_FINAL or self.status == GONE


async def start(
    session: AsyncSession, s: Schedule, owner: Principal, settings: Settings
) -> Started:
    """Create the schedule's task or workflow execution in the caller's transaction."""
    if s.workflow_id is not None:
        execution_id = await _start_execution(session, s, s.workflow_id, owner)
        return Started(execution_id=execution_id)
    body = task_of(s)
    # Run now by hand starts the task as the caller: its key must be one that may.
    owner.require_scope("tasks:write")
    task = await submit_task(session, owner, body, settings)
    return Started(task_id=task.id)


async def start_many(
    session: AsyncSession, wanted: Sequence[tuple[Schedule, Principal]], settings: Settings
) -> list[Started | TaskgateError]:
    """Start one target per entry of ``wanted`` in the caller's transaction, in order.

    The tasks go in together, one multi-row INSERT per table, so a batch costs a few round
    trips rather than a few per task. A target refused by a check (a template no longer
    valid, a session that is not the owner's, a disabled workflow) comes back as its error
    and leaves the transaction intact; anything else raises, and the caller's transaction
    is lost with it."""
    results: list[Started | TaskgateError] = []
    staged: list[TaskRows] = []
    for s, owner in wanted:
        try:
            if s.workflow_id is not None:
                # The workflows package writes the execution, and may refuse it after writing
                # some of it: the savepoint keeps that from the rest of the batch.
                async with session.begin_nested():
                    execution_id = await _start_execution(session, s, s.workflow_id, owner)
                results.append(Started(execution_id=execution_id))
                continue
            body = task_of(s)
            submission = prepare_task(owner, body, settings)
            # Building reads (a given session must be the owner's) but writes nothing yet.
            rows = await submission.build(session) if submission.runnable else None
        except TaskgateError as error:
            results.append(error)
            continue
        if rows is None:
            # A text task with no model configured is written and failed at once, which only
            # the one-task path does.
            accepted = await submit_task(session, owner, body, settings)
            results.append(Started(task_id=accepted.id))
            continue
        staged.append(rows)
        results.append(Started(task_id=rows.task["id"]))
    if staged:
        await stage(session, staged)
    return results


def task_of(s: Schedule) -> TaskCreate:
    """The task one firing of ``s`` submits."""
    assert s.task_template is not None
    try:
        return TaskCreate.model_validate(task_body(s.task_template, s.id, s.timeout_seconds))
    except ValidationError as error:
        # Checked when the schedule was saved; only a change to the task contract gets here.
        problems = validation_problems(error.errors())
        raise ValidationFailed(
            "The schedule's task is no longer valid; update it.",
            details=[FieldProblem(f"task.{p.field}", p.message) for p in problems],
        ) from None


async def _start_execution(
    session: AsyncSession, s: Schedule, workflow_id: uuid.UUID, owner: Principal
) -> uuid.UUID:
    execution = await start_execution(
        session, owner, workflow_id, s.workflow_input or {}, trigger="schedule"
    )
    return execution.id


async def check_workflow(
    session: AsyncSession, principal: Principal, workflow_id: uuid.UUID, project_id: uuid.UUID
) -> None:
    """Refuse a workflow target ``principal`` cannot see, or of another project than the
    schedule's ``project_id`` (its firings run there): a 400 on workflow_id, the same for a
    workflow it cannot see, of another project, and none at all, so it tells nothing."""
    principal.require_scope("workflows:read")
    try:
        workflow = await authorized_workflow(session, principal, workflow_id, "workflow:read")
    except NotFound:
        raise ValidationFailed.field("workflow_id", "no such workflow") from None
    if workflow.project_id != project_id:
        raise ValidationFailed.field("workflow_id", "no such workflow in this project")


async def progress_of(
    session: AsyncSession, runs: Sequence[ScheduleRun]
) -> dict[uuid.UUID, Progress]:
    """The live status of what each fired run started, keyed by the run's id."""
    task_ids = {r.task_id: r.id for r in runs if r.task_id is not None}
    execution_ids = {r.execution_id: r.id for r in runs if r.execution_id is not None}
    found: dict[uuid.UUID, Progress] = {}
    if task_ids:
        rows = await session.execute(
            select(Task.id, Task.status, Task.started_at, Task.completed_at).where(
                Task.id.in_(task_ids)
            )
        )
        for task_id, status, started_at, finished_at in rows:
            found[task_ids[task_id]] = Progress(status, started_at, finished_at)
    if execution_ids:
        model = WorkflowExecution
        rows = await session.execute(
            select(model.id, model.status, model.started_at, model.finished_at).where(
                model.id.in_(execution_ids)
            )
        )
        for execution_id, status, started_at, finished_at in rows:
            found[execution_ids[execution_id]] = Progress(status, started_at, finished_at)
    for run in runs:
        if run.id not in found and (run.task_id or run.execution_id):
            found[run.id] = Progress(GONE, None, None)
    return found
