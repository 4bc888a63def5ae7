"""The workflow engine's job kinds: ``workflow.advance`` plans, ``workflow.step`` runs one node.

A step job works in three phases. It first records the attempt (committed, so a crash later
shows as a second attempt, never as nothing). It then does the node's work outside any
transaction. Last, in one transaction that commits only while the job's lease is held, it
writes the result, plans what comes next and marks the job done. A step that already ended
is never run again; a crash mid-step re-runs that step only (at least once per step).

Waiting never holds a worker: ``delay`` and the polling of a ``task`` re-schedule the step
job later; ``approval`` parks the step until the decision (or the expiry) enqueues it again
(``resume_waiting_step``).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import isoformat, utcnow
from taskgate.models import Approval, ExecutionStep, Workflow, WorkflowExecution
from taskgate.runtime.context import JobContext, Runtime
from taskgate.runtime.handlers import JobKind
from taskgate.workflows import repository as repo
from taskgate.workflows.definitions.graph import Node
from taskgate.workflows.definitions.service import open_secrets
from taskgate.workflows.definitions.templating import template_context
from taskgate.workflows.engine.advance import advance, enqueue_step, graph_of, step_event
from taskgate.workflows.engine.nodes_runtime import StepContext
from taskgate.workflows.engine.step_record import record_outcome
from taskgate.workflows.engine.step_work import Outcome, PreparedStep, do_work
from taskgate.workflows.executions.service import (
    ADVANCE,
    EXECUTION_FINAL,
    FAILED,
    RUNNING,
    STEP,
    STEP_FINAL,
    SUCCESS,
    finish_execution,
)


async def handle_advance(ctx: JobContext) -> None:
    async with ctx.transaction() as session:
        execution = await repo.execution_for_update(session, uuid.UUID(ctx.payload["execution_id"]))
        if execution is not None:
            await advance(session, execution)
        await ctx.complete(session)


async def handle_step(ctx: JobContext) -> None:
    prepared = await _begin(ctx)
    if prepared is None:
        return
    outcome = await do_work(prepared)
    await _finish(ctx, prepared, outcome)


async def _begin(ctx: JobContext) -> PreparedStep | None:
    execution_id = uuid.UUID(ctx.payload["execution_id"])
    step_id = uuid.UUID(ctx.payload["step_id"])
    async with ctx.transaction() as session:
        execution = await repo.execution_for_update(session, execution_id)
        step = await session.get(ExecutionStep, step_id, populate_existing=True)
        if (
            execution is None
            or step is None
            or execution.status in EXECUTION_FINAL
            or step.status in STEP_FINAL
        ):
            await ctx.complete(session)
            return None
        node = (await graph_of(session, execution.version_id)).nodes[step.node_key]
        mode = _mode(node, step)
        if mode == "run":
            step.attempt += 1
            step.started_at = step.started_at or utcnow()
            step.status = RUNNING
            await step_event(session, execution, step, "step.started")
        template = await _template(session, execution, step) if mode == "run" else {}
        workflow = await session.get(Workflow, execution.workflow_id)
        secrets = open_secrets(ctx.runtime.services.secret_box, workflow) if workflow else {}
        template["secrets"] = secrets
        assert step.started_at is not None
        return PreparedStep(
            StepContext(
                ctx.runtime,
                execution.owner_id,
                execution.id,
                execution.workflow_id,
                step.id,
                node,
                template,
                secrets,
                project_id=execution.project_id,
            ),
            step.attempt,
            mode,
            step.started_at,
            step.wake_at,
            step.task_id,
            step.approval_id,
        )


def _mode(node: Node, step: ExecutionStep) -> str:
    if node.type == "approval" and step.approval_id is not None:
        return "approval"
    if node.type == "delay" and step.wake_at is not None:
        return "delay"
    if node.type == "task" and step.task_id is not None:
        return "task"
    return "run"


async def _template(
    session: AsyncSession, execution: WorkflowExecution, step: ExecutionStep
) -> dict[str, Any]:
    steps = await repo.steps_of(session, execution.id)
    outputs = {s.node_key: {"output": s.output_data} for s in steps if s.status == SUCCESS}
    return template_context(
        event=execution.event,
        input=execution.input,
        steps=outputs,
        execution={
            "id": str(execution.id),
            "workflow_id": str(execution.workflow_id),
            "workflow_version": execution.workflow_version,
            "trigger": execution.trigger,
            "attempt": execution.attempt,
            "started_at": isoformat(execution.started_at) if execution.started_at else None,
            "step_attempt": step.attempt,
        },
    )


async def _finish(ctx: JobContext, prepared: PreparedStep, outcome: Outcome) -> None:
    async with ctx.transaction() as session:
        execution = await repo.execution_for_update(session, prepared.step.execution_id)
        step = await session.get(ExecutionStep, prepared.step.step_id, populate_existing=True)
        if (
            execution is not None
            and step is not None
            and execution.status not in EXECUTION_FINAL
            and step.status not in STEP_FINAL
            and step.attempt == prepared.attempt
        ):
            await record_outcome(session, execution, step, prepared, outcome)
        await ctx.complete(session)


async def _advance_dead(
    runtime: Runtime, job_id: uuid.UUID, kind: str, payload: dict[str, Any], reason: str
) -> None:
    async with runtime.db.transaction() as session:
        execution = await repo.execution_for_update(session, uuid.UUID(payload["execution_id"]))
        if execution is not None and execution.status not in EXECUTION_FINAL:
            steps = await repo.steps_of(session, execution.id)
            summary = f"The engine could not advance the execution: {reason}"[:4000]
            await finish_execution(session, execution, steps, FAILED, summary)


async def _step_dead(
    runtime: Runtime, job_id: uuid.UUID, kind: str, payload: dict[str, Any], reason: str
) -> None:
    async with runtime.db.transaction() as session:
        execution = await repo.execution_for_update(session, uuid.UUID(payload["execution_id"]))
        step = await session.get(ExecutionStep, uuid.UUID(payload["step_id"]))
        if execution is None or step is None or execution.status in EXECUTION_FINAL:
            return
        if step.status not in STEP_FINAL:
            step.status = FAILED
            step.error = f"the step's job failed for good: {reason}"[:4000]
            step.finished_at = utcnow()
            await step_event(session, execution, step, "step.failed", {"error": step.error})
        await advance(session, execution)


WORKFLOW_ADVANCE = JobKind(handle_advance, on_dead=_advance_dead, timeout_seconds=120)
WORKFLOW_STEP = JobKind(handle_step, on_dead=_step_dead)


def job_kinds() -> dict[str, JobKind]:
    return {ADVANCE: WORKFLOW_ADVANCE, STEP: WORKFLOW_STEP}


async def resume_waiting_step(session: AsyncSession, approval: Approval) -> None:
    """A step's approval was decided or expired: the step's job runs again and reads it."""
    if approval.step_id and approval.execution_id:
        await enqueue_step(session, approval.execution_id, approval.step_id)
