"""The last phase of a step job: store the outcome of its work and plan what follows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.approvals.service import request_step_approval
from taskgate.clock import utcnow
from taskgate.models import ExecutionStep, User, WorkflowExecution
from taskgate.workflows.engine.advance import advance, enqueue_step, step_event
from taskgate.workflows.engine.nodes_runtime import (
    AskApproval,
    NodeFailure,
    NodeResult,
    Park,
    StartTask,
    Wait,
)
from taskgate.workflows.engine.secret_redaction import redact_secrets
from taskgate.workflows.engine.step_waits import start_task
from taskgate.workflows.engine.step_work import Outcome, PreparedStep
from taskgate.workflows.executions.service import FAILED, RUNNING, SUCCESS, WAITING


def _clean(value: Any, prepared: PreparedStep) -> Any:
    return redact_secrets(value, prepared.step.secrets.values())


async def record_outcome(
    session: AsyncSession,
    execution: WorkflowExecution,
    step: ExecutionStep,
    prepared: PreparedStep,
    outcome: Outcome,
) -> None:
    """Store ``outcome`` on the step (secrets redacted) and advance the execution."""
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
    prepared: PreparedStep,
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
