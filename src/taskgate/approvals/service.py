"""Approval use cases: request (a workflow step, a task's tool call), decide, expire.

Who may read and decide is the authorization seam's answer in the approval's project
(taskgate.governance.access): whoever may read approvals there reads them all; ``approval:decide``
is a member's on what it started (the execution or task the approval belongs to, or an approval
that names it as an approver) and an operator's on anyone's. A user who does not see the
project gets a 404, as for any resource; a disabled project refuses decisions (409). A decision
resumes what waits (``approvals/waiters.py``): the workflow step's job runs again and reads the
outcome, or the task is queued again with the decision.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.approvals import repository as repo
from taskgate.approvals.schemas import ApprovalFilters, ApprovalOut, DecisionResult
from taskgate.approvals.waiters import TASK_TOOL, WORKFLOW_STEP, Waiters
from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.errors import Conflict, NotFound
from taskgate.events.outbox import record_event
from taskgate.governance.access import authorize
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.ids import new_id
from taskgate.models import Approval, ExecutionStep, Task, WorkflowExecution
from taskgate.runtime.queue import enqueue

EXPIRE = "approval.expire"
PENDING, APPROVED, REJECTED, EXPIRED, CANCELLED = (
    "PENDING",
    "APPROVED",
    "REJECTED",
    "EXPIRED",
    "CANCELLED",
)
DEFAULT_TASK_APPROVAL_SECONDS = 24 * 3600


async def _approval_event(session: AsyncSession, approval: Approval, type: str) -> None:
    await record_event(
        session,
        type,
        owner_id=approval.owner_id,
        project_id=approval.project_id,
        execution_id=approval.execution_id,
        workflow_id=approval.workflow_id,
        task_id=approval.task_id,
        payload={
            "approval_id": str(approval.id),
            "status": approval.status,
            "message": approval.message,
            "action": approval.proposed_action,
            "approvers": repo.decode_approvers(approval.approvers),
            "expires_at": approval.expires_at.isoformat() if approval.expires_at else None,
            "decided_by": approval.decided_by,
            "feedback": approval.feedback,
        },
    )


async def _open(session: AsyncSession, approval: Approval) -> Approval:
    session.add(approval)
    await session.flush()
    await _approval_event(session, approval, "approval.requested")
    if approval.expires_at is not None:
        # A timer per approval: expiry is exact without a periodic sweep.
        await enqueue(
            session, EXPIRE, {"approval_id": str(approval.id)}, run_after=approval.expires_at
        )
    return approval


async def request_step_approval(
    session: AsyncSession,
    execution: WorkflowExecution,
    step: ExecutionStep,
    *,
    message: str,
    approvers: Sequence[str],
    timeout_seconds: int,
    proposed_action: dict[str, Any],
) -> Approval:
    approval = Approval(
        id=new_id(),
        owner_id=execution.owner_id,
        project_id=execution.project_id,
        kind=WORKFLOW_STEP,
        status=PENDING,
        message=message,
        proposed_action=proposed_action,
        approvers=repo.encode_approvers(approvers),
        workflow_id=execution.workflow_id,
        execution_id=execution.id,
        step_id=step.id,
        expires_at=utcnow() + timedelta(seconds=timeout_seconds),
    )
    return await _open(session, approval)


async def request_task_approval(
    session: AsyncSession,
    task: Task,
    *,
    tool: str,
    arguments: dict[str, Any],
    message: str | None = None,
    timeout_seconds: int = DEFAULT_TASK_APPROVAL_SECONDS,
) -> Approval:
    """For the task runner, when the agent calls a tool that needs approval (the task moves to
    WAITING_APPROVAL in the same transaction)."""
    approval = Approval(
        id=new_id(),
        owner_id=task.owner_id,
        project_id=task.project_id,
        kind=TASK_TOOL,
        status=PENDING,
        message=message or f"The agent wants to run the tool {tool!r}.",
        proposed_action={"tool": tool, "arguments": arguments},
        approvers="",
        task_id=task.id,
        expires_at=utcnow() + timedelta(seconds=timeout_seconds),
    )
    return await _open(session, approval)


async def withdraw_for_execution(session: AsyncSession, execution_id: uuid.UUID) -> None:
    """The execution ended: its pending approvals no longer ask anything."""
    await repo.cancel_pending_for_execution(session, execution_id)


def _deciding_owner(principal: Principal, approval: Approval) -> uuid.UUID:
    """Whose approval it is for ``approval:decide``: an approver it names decides it as its
    owner does (still only with a role that grants deciding what one owns)."""
    if repo.approver_key(principal.username) in approval.approvers:
        return principal.user_id
    return approval.owner_id


async def list_approvals(
    session: AsyncSession, principal: Principal, filters: ApprovalFilters, page: PageParams
) -> Page[ApprovalOut]:
    """The approvals of the request's project (everyone's: ``approval:read`` reads them all)."""
    listing = repo.approvals_listing(authorize(principal, "approval:read"), filters)
    return await page_of(session, listing, page, approval_out)


async def get_approval(
    session: AsyncSession, principal: Principal, approval_id: uuid.UUID, *, lock: bool = False
) -> Approval:
    """The approval, if ``principal`` may read it (``lock``: may decide it, and it is locked
    for the decision); NotFound when missing or in a project it does not see."""
    if lock:
        approval = await repo.approval_for_update(session, approval_id)
    else:
        approval = await session.get(Approval, approval_id)
    if approval is None:
        raise NotFound("Approval not found.")
    authorize(
        principal,
        "approval:decide" if lock else "approval:read",
        project_id=approval.project_id,
        owner_id=_deciding_owner(principal, approval) if lock else approval.owner_id,
        resource_id=approval.id,
    )
    return approval


async def decide(
    session: AsyncSession,
    principal: Principal,
    approval_id: uuid.UUID,
    *,
    approved: bool,
    feedback: str | None,
    modified_action: dict[str, Any] | None,
    waiters: Waiters,
    subject_id: str | None = None,
    approved_by: str | None = None,
) -> Approval:
    approval = await get_approval(session, principal, approval_id, lock=True)
    if subject_id is not None and subject_id not in {
        str(value)
        for value in (approval.workflow_id, approval.execution_id, approval.task_id)
        if value is not None
    }:
        raise NotFound("Approval not found.")
    if approval.status != PENDING:
        raise Conflict(f"The approval was already {approval.status.lower()}.")
    now = utcnow()
    if approval.expires_at is not None and approval.expires_at <= now:
        raise Conflict("The approval expired before the decision.")
    approval.status = APPROVED if approved else REJECTED
    approval.decided_at = now
    approval.decided_by = principal.username
    approval.feedback = feedback
    approval.modified_action = modified_action if approved else None
    await _approval_event(session, approval, "approval.decided")
    await waiters.resume(session, approval)
    await audit(
        session,
        "approval.decide",
        principal,
        resource_type="approval",
        resource_id=approval.id,
        detail={"approved": approved, "approved_by": approved_by},
        project_id=approval.project_id,
    )
    return approval


async def expire(session: AsyncSession, approval_id: uuid.UUID, waiters: Waiters) -> bool:
    """The expiry timer: a still-pending approval past its time expires. True if it did."""
    approval = await repo.approval_for_update(session, approval_id)
    if approval is None or approval.status != PENDING:
        return False
    if approval.expires_at is not None and approval.expires_at > utcnow():
        return False
    approval.status = EXPIRED
    approval.decided_at = utcnow()
    approval.feedback = "No decision before the approval expired."
    await _approval_event(session, approval, "approval.expired")
    await waiters.resume(session, approval)
    return True


def approval_out(approval: Approval) -> ApprovalOut:
    return ApprovalOut(
        id=approval.id,
        approval_id=approval.id,
        kind=approval.kind,
        status=approval.status,
        message=approval.message,
        proposed_action=approval.proposed_action,
        approvers=repo.decode_approvers(approval.approvers),
        workflow_id=approval.workflow_id,
        execution_id=approval.execution_id,
        step_id=approval.step_id,
        task_id=approval.task_id,
        expires_at=approval.expires_at,
        decided_at=approval.decided_at,
        decided_by=approval.decided_by,
        feedback=approval.feedback,
        modified_action=approval.modified_action,
        created_at=approval.created_at,
    )


def decision_result(approval: Approval, workflow_id: str | None) -> DecisionResult:
    """The answer to a decision; ``workflow_id`` as Shannon's body named the subject."""
    subject = approval.task_id or approval.execution_id
    return DecisionResult(
        success=True,
        message="Approved." if approval.status == APPROVED else "Rejected.",
        approval_id=approval.id,
        workflow_id=workflow_id or (str(subject) if subject else None),
        status=approval.status,
    )
