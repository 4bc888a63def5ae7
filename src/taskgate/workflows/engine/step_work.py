"""The middle phase of a step job: the node's work, done outside any transaction.

Waiting nodes (``delay``, ``task``, ``approval``) only decide here whether to wait again or
to finish; the step job records that decision in its last phase.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from taskgate.clock import utcnow
from taskgate.models import Approval
from taskgate.runtime.context import Runtime
from taskgate.workflows.engine.nodes_runtime import (
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
from taskgate.workflows.engine.step_waits import poll_task
from taskgate.workflows.executions.service import WAITING

log = structlog.get_logger()
DEFAULT_STEP_TIMEOUT = 30.0

Outcome = NodeResult | NodeFailure | Wait | Park | StartTask | AskApproval


@dataclass
class PreparedStep:
    """What the first phase of a step job read, for the work and the recording after it."""

    step: StepContext
    attempt: int
    mode: str
    started_at: datetime
    wake_at: datetime | None
    task_id: uuid.UUID | None
    approval_id: uuid.UUID | None


def _timeout(prepared: PreparedStep) -> float:
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


async def do_work(prepared: PreparedStep) -> Outcome:
    """What the node's work came to; a crash or a timeout is a failure to retry, never lost."""
    try:
        return await _dispatch(prepared)
    except NodeFailure as failure:
        return failure
    except TimeoutError:
        return NodeFailure(f"the step timed out after {_timeout(prepared):g} s", retryable=True)
    except Exception as exc:  # a node must end in a recorded failure, never a lost step
        log.exception("workflow_step_crashed", step_id=str(prepared.step.step_id))
        return NodeFailure(f"internal error: {type(exc).__name__}", retryable=True)


async def _dispatch(prepared: PreparedStep) -> Outcome:
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
