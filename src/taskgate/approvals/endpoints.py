"""Approval routes: list, read, decide (native and Shannon's body)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from taskgate.approvals import service
from taskgate.approvals.schemas import (
    ApprovalFilters,
    ApprovalOut,
    ApprovalStatus,
    CompatDecisionRequest,
    DecisionRequest,
    DecisionResult,
)
from taskgate.approvals.waiters import Waiters
from taskgate.http.auth import ApprovalsRead, ApprovalsWrite, Session
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["approvals"], route_class=JsonRoute)
ApprovalPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]


async def app_waiters(request: Request) -> Waiters:
    """What resumes once an approval is decided: built with the app (``create_app``)."""
    waiters: Waiters = request.app.state.approval_waiters
    return waiters


AppWaiters = Annotated[Waiters, Depends(app_waiters)]


@router.get("/approvals", responses=errors(400, 401, 403, 404))
async def list_approvals(
    session: Session,
    principal: ApprovalsRead,
    page: ApprovalPage,
    status: Annotated[list[ApprovalStatus] | None, Query()] = None,
    execution_id: uuid.UUID | None = None,
    task_id: uuid.UUID | None = None,
) -> Page[ApprovalOut]:
    """The approvals of the project; ``status=PENDING`` for what waits."""
    filters = ApprovalFilters(statuses=status or (), execution_id=execution_id, task_id=task_id)
    return await service.list_approvals(session, principal, filters, page)


@router.post("/approvals/decision", responses=errors(400, 401, 403, 404, 409))
async def decide_compat(
    body: CompatDecisionRequest,
    session: Session,
    principal: ApprovalsWrite,
    waiters: AppWaiters,
) -> DecisionResult:
    """Shannon's body: the approval (and optionally what it belongs to) named in the body."""
    approval = await service.decide(
        session,
        principal,
        body.approval_id,
        approved=body.approved,
        feedback=body.feedback,
        modified_action=body.modified_action,
        waiters=waiters,
        subject_id=body.workflow_id,
        approved_by=body.approved_by,
    )
    return service.decision_result(approval, body.workflow_id)


@router.get("/approvals/{approval_id}", responses=errors(401, 403, 404))
async def get_approval(
    approval_id: uuid.UUID, session: Session, principal: ApprovalsRead
) -> ApprovalOut:
    return service.approval_out(await service.get_approval(session, principal, approval_id))


@router.post("/approvals/{approval_id}/decision", responses=errors(400, 401, 403, 404, 409))
async def decide(
    approval_id: uuid.UUID,
    body: DecisionRequest,
    session: Session,
    principal: ApprovalsWrite,
    waiters: AppWaiters,
) -> DecisionResult:
    approval = await service.decide(
        session,
        principal,
        approval_id,
        approved=body.approved,
        feedback=body.feedback,
        modified_action=body.modified_action,
        waiters=waiters,
    )
    return service.decision_result(approval, None)
