"""The workflow engine's jobs: ``workflow.advance`` plans, ``workflow.step`` runs one node.

A step job works in three phases. It first records the attempt (committed, so a crash later
shows as a second attempt, never as nothing). It then does the node's work outside any
transaction. Last, in one transaction that commits only while the job's lease is held, it
writes the result, plans what comes next and marks the job done. A step that already ended
is never run again; a crash mid-step re-runs that step only (at least once per step).

Waiting never holds a worker: ``delay`` and the polling of a ``task`` re-schedule the step
job later; ``approval`` parks the step until the decision (or the expiry) enqueues it again.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.approvals.service import expire, request_step_approval
from taskgate.destinations.sealing import secret_box
from taskgate.ids import isoformat, utcnow
from taskgate.models import Approval, ExecutionStep, User, Workflow, WorkflowExecution
from taskgate.outbound.secretbox import SecretBox
from taskgate.runtime.context import JobContext, Runtime
from taskgate.runtime.handlers import JobKind
from taskgate.workflows import repository as repo
from taskgate.workflows.advance import advance, enqueue_step, graph_of, step_event
from taskgate.workflows.executions_service import (
    EXECUTION_FINAL,
    FAILED,
    RUNNING,
    STEP_FINAL,
    SUCCESS,
    WAITING,
    finish_execution,
)
from taskgate.workflows.graph import Node
from taskgate.workflows.nodes_runtime import (
    AskApproval,
    NodeFailure,
    NodeResult,
    Park,
    StartTask,
    StepContext,
    Wait,
    render_config,
    run_stateless,
)
from taskgate.workflows.service import open_secrets
from taskgate.workflows.step_waits import poll_task, start_task
from taskgate.workflows.templating import redact_secrets, template_context

log = structlog.get_logger()
DEFAULT_STEP_TIMEOUT = 30.0
_SECRET_BOX = "workflows.secret_box"


Outcome = NodeResult | NodeFailure | Wait | Park | StartTask | AskApproval


@dataclass
class _Prepared:
    step: StepContext
    attempt: int
    mode: str
    started_at: datetime
    wake_at: datetime | None
    task_id: uuid.UUID | None
    approval_id: uuid.UUID | None


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
    outcome = await _work(prepared)
    await _finish(ctx, prepared, outcome)


async def _begin(ctx: JobContext) -> _Prepared | None:
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
        secrets = open_secrets(_box(ctx.runtime), workflow) if workflow else {}
        template["secrets"] = secrets
        assert step.started_at is not None
        return _Prepared(
            StepContext(
                ctx.runtime,
                execution.owner_id,
                execution.id,
                execution.workflow_id,
                step.id,
                node,
                template,
                secrets,
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


def _box(runtime: Runtime) -> SecretBox:
    box: SecretBox | None = runtime.extras.get(_SECRET_BOX)
    if box is None:
        box = runtime.extras[_SECRET_BOX] = secret_box(runtime.settings)
    return box


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


def _timeout(prepared: _Prepared) -> float:
    node, settings = prepared.step.node, prepared.step.runtime.settings
    if node.timeout_seconds is not None:
        return node.timeout_seconds
    if node.type == "http.request":
        return float(node.config.get("timeout_seconds") or 10.0) + 5.0
    if node.type == "llm.prompt":
        return settings.model.timeout_seconds + 10.0
    if node.type == "notify":
        return settings.delivery.request_timeout_seconds + 5.0
    return DEFAULT_STEP_TIMEOUT


async def _work(prepared: _Prepared) -> Outcome:
    try:
        return await _dispatch(prepared)
    except NodeFailure as failure:
        return failure
    except TimeoutError:
        return NodeFailure(f"the step timed out after {_timeout(prepared):g} s", retryable=True)
    except Exception as exc:  # a node must end in a recorded failure, never a lost step
        log.exception("workflow_step_crashed", step_id=str(prepared.step.step_id))
        return NodeFailure(f"internal error: {type(exc).__name__}", retryable=True)


async def _dispatch(prepared: _Prepared) -> Outcome:
    step, node = prepared.step, prepared.step.node
    if prepared.mode == "approval":
        return await _approval_outcome(step.runtime, prepared.approval_id)
    if prepared.mode == "delay":
        assert prepared.wake_at is not None
        if utcnow() < prepared.wake_at:
            return Wait(prepared.wake_at, WAITING)
        waited = (prepared.wake_at - prepared.started_at).total_seconds()
        return NodeResult({"waited_seconds": round(waited, 3)})
    if prepared.mode == "task":
        assert prepared.task_id is not None
        return await poll_task(step.runtime, prepared.task_id, prepared.started_at, node)
    if node.type in ("task", "delay", "approval"):
        async with asyncio.timeout(DEFAULT_STEP_TIMEOUT):
            config = await asyncio.to_thread(render_config, node, step.template)
        if node.type == "task":
            return StartTask(config)
        if node.type == "approval":
            return AskApproval(config)
        seconds = float(config["seconds"])
        if not 0 <= seconds <= 86_400:
            raise NodeFailure("delay.seconds must be between 0 and 86400")
        if seconds == 0:
            return NodeResult({"waited_seconds": 0}, config)
        wake_at = utcnow() + timedelta(seconds=seconds)
        return Wait(wake_at, WAITING, wake_at=wake_at)
    async with asyncio.timeout(_timeout(prepared)):
        return await run_stateless(step)


async def _approval_outcome(runtime: Runtime, approval_id: uuid.UUID | None) -> Outcome:
    async with runtime.db.transaction(write=False) as session:
        approval = await session.get(Approval, approval_id) if approval_id else None
    if approval is None or approval.status == "PENDING":
        return Park()
    if approval.status == "APPROVED":
        action = approval.modified_action or approval.proposed_action
        return NodeResult(
            {
                "approved": True,
                "approval_id": str(approval.id),
                "decided_by": approval.decided_by,
                "feedback": approval.feedback,
                "action": action,
                "modified": approval.modified_action is not None,
            }
        )
    if approval.status == "REJECTED":
        reason = f": {approval.feedback}" if approval.feedback else ""
        return NodeFailure(f"rejected by {approval.decided_by}{reason}")
    return NodeFailure(f"the approval {approval.status.lower()} without a decision")


async def _finish(ctx: JobContext, prepared: _Prepared, outcome: Outcome) -> None:
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
            await _record(session, execution, step, prepared, outcome)
        await ctx.complete(session)


def _clean(value: Any, prepared: _Prepared) -> Any:
    return redact_secrets(value, prepared.step.secrets.values())


async def _record(
    session: AsyncSession,
    execution: WorkflowExecution,
    step: ExecutionStep,
    prepared: _Prepared,
    outcome: Outcome,
) -> None:
    now = utcnow()
    if isinstance(outcome, Park):
        return
    if isinstance(outcome, Wait):
        step.status = outcome.status
        if outcome.wake_at is not None:
            step.wake_at = outcome.wake_at
        await enqueue_step(session, execution.id, step.id, run_after=outcome.run_after)
    elif isinstance(outcome, StartTask):
        step.input_data = _clean(outcome.config, prepared)
        user = await session.get(User, execution.owner_id)
        assert user is not None
        task = await start_task(
            session, prepared.step.runtime.settings, user, execution, outcome.config
        )
        step.task_id = task.id
        await enqueue_step(session, execution.id, step.id, run_after=now + timedelta(seconds=0.2))
        return
    elif isinstance(outcome, AskApproval):
        config = outcome.config
        step.input_data = _clean(config, prepared)
        action = {
            "type": "workflow.step",
            "node_key": step.node_key,
            "message": config["message"],
            "input": execution.input,
        }
        approval = await request_step_approval(
            session,
            execution,
            step,
            message=config["message"],
            approvers=config["approvers"],
            timeout_seconds=config["timeout_seconds"],
            proposed_action=_clean(action, prepared),
        )
        step.approval_id = approval.id
        step.status = WAITING
    elif isinstance(outcome, NodeResult):
        step.status = SUCCESS
        step.output_data = _clean(outcome.output, prepared)
        if outcome.input_data is not None:
            step.input_data = _clean(outcome.input_data, prepared)
        step.condition_result = outcome.condition
        step.error = None
        step.finished_at = now
        await step_event(session, execution, step, "step.succeeded", _duration(step))
    else:
        await _record_failure(session, execution, step, prepared, outcome, now)
    await advance(session, execution)


async def _record_failure(
    session: AsyncSession,
    execution: WorkflowExecution,
    step: ExecutionStep,
    prepared: _Prepared,
    failure: NodeFailure,
    now: datetime,
) -> None:
    policy = prepared.step.node.retries
    error = str(_clean(failure.message, prepared))[:4000]
    step.error = error
    step.task_id = None
    step.wake_at = None
    if failure.retryable and step.attempt < policy.max_attempts:
        delay = policy.delay_before(step.attempt + 1)
        step.status = RUNNING
        await step_event(
            session, execution, step, "step.retrying", {"error": error, "retry_in_seconds": delay}
        )
        await enqueue_step(session, execution.id, step.id, run_after=now + timedelta(seconds=delay))
        return
    step.status = FAILED
    step.finished_at = now
    await step_event(session, execution, step, "step.failed", {"error": error, **_duration(step)})


def _duration(step: ExecutionStep) -> dict[str, Any]:
    if step.started_at is None or step.finished_at is None:
        return {}
    return {"duration_ms": round((step.finished_at - step.started_at).total_seconds() * 1000)}


async def handle_expire(ctx: JobContext) -> None:
    async with ctx.transaction() as session:
        await expire(session, uuid.UUID(ctx.payload["approval_id"]))
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
APPROVAL_EXPIRE = JobKind(handle_expire, timeout_seconds=120)
