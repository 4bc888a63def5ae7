"""Execution use cases: start (manual, event, webhook, schedule, replay), list, read, cancel."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.errors import Conflict, NotFound
from taskgate.events.outbox import record_event
from taskgate.governance.access import authorize
from taskgate.http.context import current_trace_id
from taskgate.http.pagination import Page, PageParams, paginate
from taskgate.ids import new_id
from taskgate.models import ExecutionStep, Task, Workflow, WorkflowExecution
from taskgate.outbound.secretbox import redact
from taskgate.runtime.queue import enqueue
from taskgate.workflows import repository as repo
from taskgate.workflows.schemas import ExecutionDetail, ExecutionFilters, ExecutionOut, StepOut

ADVANCE = "workflow.advance"
STEP = "workflow.step"

QUEUED, RUNNING, WAITING = "QUEUED", "RUNNING", "WAITING"
SUCCESS, FAILED, CANCELLED = "SUCCESS", "FAILED", "CANCELLED"
PENDING, SKIPPED = "PENDING", "SKIPPED"
EXECUTION_FINAL = frozenset({SUCCESS, FAILED, CANCELLED})
STEP_FINAL = frozenset({SUCCESS, FAILED, SKIPPED, CANCELLED})


def concurrency_key(execution_id: uuid.UUID) -> str:
    return f"exec:{execution_id}"


async def enqueue_advance(session: AsyncSession, execution_id: uuid.UUID) -> None:
    await enqueue(
        session,
        ADVANCE,
        {"execution_id": str(execution_id)},
        concurrency_key=concurrency_key(execution_id),
    )


async def execution_event(
    session: AsyncSession,
    execution: WorkflowExecution,
    type: str,
    payload: dict[str, Any] | None = None,
) -> None:
    await record_event(
        session,
        type,
        owner_id=execution.owner_id,
        project_id=execution.project_id,
        execution_id=execution.id,
        workflow_id=execution.workflow_id,
        payload={"status": execution.status, **(payload or {})},
    )


async def create_execution(
    session: AsyncSession,
    workflow: Workflow,
    *,
    input: dict[str, Any],
    trigger: str,
    version: int | None = None,
    event: dict[str, Any] | None = None,
    trigger_event_id: int | None = None,
    replay_of: WorkflowExecution | None = None,
    owner_id: uuid.UUID | None = None,
) -> WorkflowExecution:
    """A QUEUED execution pinned to a version, its event and its first advance job, all in
    the caller's transaction. Its owner is who started it (``owner_id``); an event starts
    its workflow as the workflow's owner."""
    pinned = await repo.version_of(session, workflow.id, version or workflow.version)
    if pinned is None:
        raise NotFound("Workflow version not found.")
    execution = WorkflowExecution(
        id=new_id(),
        owner_id=owner_id or workflow.owner_id,
        project_id=workflow.project_id,
        workflow_id=workflow.id,
        version_id=pinned.id,
        workflow_version=pinned.version,
        status=QUEUED,
        trigger=trigger,
        input=input,
        event=event or {},
        trigger_event_id=trigger_event_id,
        replay_of_id=replay_of.id if replay_of else None,
        attempt=replay_of.attempt + 1 if replay_of else 1,
        trace_id=current_trace_id(),
    )
    session.add(execution)
    await session.flush()
    await execution_event(
        session,
        execution,
        "execution.created",
        {
            "workflow_name": workflow.name,
            "workflow_version": pinned.version,
            "trigger": trigger,
            "replay_of": str(replay_of.id) if replay_of else None,
        },
    )
    await enqueue_advance(session, execution.id)
    return execution


async def start_execution(
    session: AsyncSession,
    principal: Principal,
    workflow_id: uuid.UUID,
    input: dict[str, Any],
    trigger: str = "manual",
) -> WorkflowExecution:
    """Run a workflow now (the run endpoint, and the scheduler's firings as the schedule's
    owner): anyone who may run workflows in its project (``workflow:run``), who owns the
    execution (a member controls the runs it started)."""
    workflow = await repo.live_workflow(session, workflow_id)
    if workflow is None:
        raise NotFound("Workflow not found.")
    authorize(
        _runner(principal),
        "workflow:run",
        project_id=workflow.project_id,
        owner_id=workflow.owner_id,
        resource_id=workflow.id,
    )
    if not workflow.enabled:
        raise Conflict("The workflow is disabled; enable it to run it.")
    execution = await create_execution(
        session, workflow, input=input, trigger=trigger, owner_id=principal.user_id
    )
    await audit(
        session,
        "workflow.run",
        principal,
        resource_type="workflow",
        resource_id=workflow.id,
        detail={"execution_id": str(execution.id), "trigger": trigger},
    )
    return execution


def _runner(principal: Principal) -> Principal:
    """An API key may run workflows with ``executions:write`` as well as with the
    ``workflows:write`` that ``workflow:run`` asks for (starting one is making an execution)."""
    if principal.has_scope("workflows:write") or not principal.has_scope("executions:write"):
        return principal
    return dataclasses.replace(principal, scopes=principal.scopes | {"workflows:write"})


async def list_executions(
    session: AsyncSession, principal: Principal, filters: ExecutionFilters, page: PageParams
) -> Page[ExecutionOut]:
    """The executions of the request's project, everyone's."""
    project_id = authorize(principal, "execution:read")
    window = await paginate(session, repo.executions_listing(project_id, filters), page)
    names = await repo.workflow_names(session, [r.workflow_id for r in window.rows])
    return window.page([execution_out(r, names.get(r.workflow_id, "")) for r in window.rows])


async def _authorized_execution(
    session: AsyncSession, principal: Principal, execution_id: uuid.UUID, permission: str
) -> WorkflowExecution:
    execution = await session.get(WorkflowExecution, execution_id)
    if execution is None:
        raise NotFound("Execution not found.")
    authorize(
        principal,
        permission,
        project_id=execution.project_id,
        owner_id=execution.owner_id,
        resource_id=execution.id,
    )
    return execution


async def get_execution(
    session: AsyncSession, principal: Principal, execution_id: uuid.UUID
) -> WorkflowExecution:
    """An execution of a project ``principal`` reads executions in, whoever started it;
    NotFound when missing or in a project it does not see."""
    return await _authorized_execution(session, principal, execution_id, "execution:read")


async def replay_execution(
    session: AsyncSession, principal: Principal, execution_id: uuid.UUID, *, latest: bool
) -> WorkflowExecution:
    original = await _authorized_execution(session, principal, execution_id, "execution:replay")
    if original.status not in EXECUTION_FINAL:
        raise Conflict(f"The execution is {original.status}; only a finished one can be replayed.")
    workflow = await repo.any_workflow(session, original.workflow_id)
    if workflow is None or workflow.deleted_at is not None:
        raise Conflict("The workflow was deleted; its executions cannot be replayed.")
    execution = await create_execution(
        session,
        workflow,
        input=original.input,
        trigger="replay",
        version=None if latest else original.workflow_version,
        event=original.event,
        trigger_event_id=original.trigger_event_id,
        replay_of=original,
        owner_id=principal.user_id,
    )
    await audit(
        session,
        "execution.replay",
        principal,
        resource_type="execution",
        resource_id=original.id,
        detail={"execution_id": str(execution.id)},
    )
    return execution


async def cancel_execution(
    session: AsyncSession, principal: Principal, execution_id: uuid.UUID
) -> str:
    await _authorized_execution(session, principal, execution_id, "execution:cancel")
    execution = await repo.execution_for_update(session, execution_id)
    assert execution is not None
    if execution.status in EXECUTION_FINAL:
        raise Conflict(f"The execution already ended ({execution.status}).")
    steps = await repo.steps_of(session, execution.id)
    await finish_execution(
        session, execution, steps, CANCELLED, f"Cancelled by {principal.username}."
    )
    for step in steps:
        if step.task_id is not None and step.status == CANCELLED:
            await _cancel_task(session, principal, execution, step.task_id)
    await audit(
        session, "execution.cancel", principal, resource_type="execution", resource_id=execution.id
    )
    return "Execution cancelled."


async def _cancel_task(
    session: AsyncSession, principal: Principal, execution: WorkflowExecution, task_id: uuid.UUID
) -> None:
    from taskgate.tasks.service import cancel_task
    from taskgate.tasks.states import is_final

    task = await session.get(Task, task_id)
    if task is not None and not is_final(task.status):
        # The step's task goes with the execution, whatever the caller's key or roles say of
        # tasks: the caller, trusted with the execution's project alone (no grants, like a
        # principal of the runtime), cancels it.
        canceller = dataclasses.replace(
            principal,
            scopes=frozenset({"*"}),
            api_key_id=None,
            key_project_id=None,
            grants=None,
            project_id=execution.project_id,
        )
        await cancel_task(session, canceller, task_id, "The workflow execution was cancelled.")


async def finish_execution(
    session: AsyncSession,
    execution: WorkflowExecution,
    steps: list[ExecutionStep],
    status: str,
    error_summary: str | None = None,
) -> None:
    """End the execution: unfinished steps are cancelled, pending approvals withdrawn."""
    from taskgate.approvals.service import withdraw_for_execution

    now = utcnow()
    execution.status = status
    execution.finished_at = now
    execution.started_at = execution.started_at or now
    execution.error_summary = error_summary
    for step in steps:
        if step.status not in STEP_FINAL:
            step.status = CANCELLED
            step.finished_at = now
    await withdraw_for_execution(session, execution.id)
    kind = {SUCCESS: "succeeded", FAILED: "failed", CANCELLED: "cancelled"}[status]
    await execution_event(
        session,
        execution,
        f"execution.{kind}",
        {"error": error_summary, "duration_ms": duration_ms(execution)},
    )


def duration_ms(row: WorkflowExecution | ExecutionStep) -> int | None:
    if row.started_at is None or row.finished_at is None:
        return None
    return max(0, round((row.finished_at - row.started_at).total_seconds() * 1000))


def execution_out(execution: WorkflowExecution, workflow_name: str) -> ExecutionOut:
    return ExecutionOut(**_execution_fields(execution, workflow_name))


def _execution_fields(execution: WorkflowExecution, workflow_name: str) -> dict[str, Any]:
    return {
        "id": execution.id,
        "workflow_id": execution.workflow_id,
        "workflow_name": workflow_name,
        "workflow_version": execution.workflow_version,
        "status": execution.status,
        "trigger": execution.trigger,
        "attempt": execution.attempt,
        "trigger_event_id": execution.trigger_event_id,
        "replay_of": execution.replay_of_id,
        "error_summary": execution.error_summary,
        "created_at": execution.created_at,
        "started_at": execution.started_at,
        "finished_at": execution.finished_at,
        "duration_ms": duration_ms(execution),
    }


def step_out(step: ExecutionStep) -> StepOut:
    return StepOut(
        id=step.id,
        node_key=step.node_key,
        node_type=step.node_type,
        status=step.status,
        attempt=step.attempt,
        input_data=redact(step.input_data),
        output_data=redact(step.output_data),
        error=step.error,
        task_id=step.task_id,
        approval_id=step.approval_id,
        started_at=step.started_at,
        finished_at=step.finished_at,
        duration_ms=duration_ms(step),
    )


async def execution_detail(session: AsyncSession, execution: WorkflowExecution) -> ExecutionDetail:
    names = await repo.workflow_names(session, [execution.workflow_id])
    steps = await repo.steps_of(session, execution.id)
    event = execution.event or {}
    context = {
        "trigger": execution.trigger,
        "source": event.get("source"),
        "event_type": event.get("type"),
        "event": redact(event),
    }
    return ExecutionDetail(
        **_execution_fields(execution, names.get(execution.workflow_id, "")),
        input=redact(execution.input),
        context=context,
        trace_id=execution.trace_id,
        steps=[step_out(step) for step in steps],
    )
