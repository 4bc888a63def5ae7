"""Execution routes: run a workflow, list and read executions, replay, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from taskgate.http.auth import ExecutionsRead, ExecutionsWrite, Session, WorkflowsRun
from taskgate.http.context import current_trace_id
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.http.params import Instant
from taskgate.openapi import errors
from taskgate.workflows.executions import service
from taskgate.workflows.schemas import (
    CancelResult,
    ExecutionDetail,
    ExecutionFilters,
    ExecutionOut,
    ExecutionStatus,
    ReplayAccepted,
    ReplayRequest,
    RunAccepted,
    RunRequest,
)

router = APIRouter(prefix="/api/v1", tags=["executions"], route_class=JsonRoute)
ExecutionPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]


@router.post(
    "/workflows/{workflow_id}/run",
    tags=["workflows"],
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 401, 403, 404, 409),
)
async def run_workflow(
    workflow_id: uuid.UUID,
    session: Session,
    principal: WorkflowsRun,
    response: Response,
    body: RunRequest | None = None,
) -> RunAccepted:
    execution = await service.start_execution(
        session, principal, workflow_id, (body or RunRequest()).input
    )
    response.headers["Location"] = f"/api/v1/executions/{execution.id}"
    return RunAccepted(execution_id=execution.id, trace_id=current_trace_id())


@router.get("/executions", responses=errors(400, 401, 403))
async def list_executions(
    session: Session,
    principal: ExecutionsRead,
    page: ExecutionPage,
    workflow: Annotated[uuid.UUID | None, Query(description="A workflow id.")] = None,
    status: Annotated[list[ExecutionStatus] | None, Query()] = None,
    since: Annotated[Instant | None, Query(description="Created at or after.")] = None,
    until: Annotated[Instant | None, Query(description="Created at or before.")] = None,
) -> Page[ExecutionOut]:
    filters = ExecutionFilters(
        workflow_id=workflow, statuses=status or (), since=since, until=until
    )
    return await service.list_executions(session, principal, filters, page)


@router.get("/executions/{execution_id}", responses=errors(401, 403, 404))
async def get_execution(
    execution_id: uuid.UUID, session: Session, principal: ExecutionsRead
) -> ExecutionDetail:
    execution = await service.get_execution(session, principal, execution_id)
    return await service.execution_detail(session, execution)


@router.post(
    "/executions/{execution_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 401, 403, 404, 409),
)
async def replay_execution(
    execution_id: uuid.UUID,
    session: Session,
    principal: ExecutionsWrite,
    body: ReplayRequest | None = None,
) -> ReplayAccepted:
    """Run a finished execution again with the same input and event (a new execution)."""
    execution = await service.replay_execution(
        session, principal, execution_id, latest=(body or ReplayRequest()).latest_version
    )
    return ReplayAccepted(
        execution_id=execution.id,
        message="Execution queued for replay",
        trace_id=current_trace_id(),
    )


@router.post(
    "/executions/{execution_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(401, 403, 404, 409),
)
async def cancel_execution(
    execution_id: uuid.UUID, session: Session, principal: ExecutionsWrite
) -> CancelResult:
    message = await service.cancel_execution(session, principal, execution_id)
    return CancelResult(success=True, message=message)
