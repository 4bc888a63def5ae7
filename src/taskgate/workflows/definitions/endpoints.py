"""Workflow routes: CRUD with versions (ETag / If-Match), duplicate."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from taskgate.http.auth import Session, WorkflowsRead, WorkflowsReadWrite, WorkflowsWrite
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.http.params import VersionNumber
from taskgate.http.preconditions import IfMatch, etag
from taskgate.openapi import errors
from taskgate.outbound.secretbox import SecretBox
from taskgate.runtime.services import RuntimeServices
from taskgate.workflows.definitions import service
from taskgate.workflows.schemas import (
    DuplicateRequest,
    TriggerType,
    WorkflowCreate,
    WorkflowFilters,
    WorkflowOut,
    WorkflowSummary,
    WorkflowUpdate,
    WorkflowVersionOut,
)

router = APIRouter(prefix="/api/v1", tags=["workflows"], route_class=JsonRoute)


def get_secret_box(request: Request) -> SecretBox:
    """The app's one box (``RuntimeServices.secret_box``), built on first use."""
    services: RuntimeServices = request.app.state.services
    return services.secret_box


Box = Annotated[SecretBox, Depends(get_secret_box)]
WorkflowPage = Annotated[
    PageParams,
    Depends(
        page_params(
            ["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"],
        )
    ),
]
VersionPage = Annotated[
    PageParams,
    Depends(page_params(["workflow_version", "-workflow_version"], default="-workflow_version")),
]


def _with_etag(response: Response, version: int) -> None:
    response.headers["ETag"] = etag(version)


@router.get("/workflows", responses=errors(400, 401, 403))
async def list_workflows(
    session: Session,
    principal: WorkflowsRead,
    page: WorkflowPage,
    enabled: bool | None = None,
    search: Annotated[str | None, Query(max_length=200, description="In name or slug.")] = None,
    trigger_type: TriggerType | None = None,
) -> Page[WorkflowSummary]:
    filters = WorkflowFilters(enabled=enabled, search=search, trigger_type=trigger_type)
    return await service.list_workflows(session, principal, filters, page)


@router.post(
    "/workflows", status_code=status.HTTP_201_CREATED, responses=errors(400, 401, 403, 409)
)
async def create_workflow(
    body: WorkflowCreate,
    session: Session,
    principal: WorkflowsWrite,
    box: Box,
    response: Response,
) -> WorkflowOut:
    workflow = await service.create_workflow(session, principal, body, box)
    await session.flush()
    _with_etag(response, workflow.version)
    response.headers["Location"] = f"/api/v1/workflows/{workflow.id}"
    return service.workflow_out(workflow)


@router.get("/workflows/{workflow_id}", responses=errors(401, 403, 404))
async def get_workflow(
    workflow_id: uuid.UUID, session: Session, principal: WorkflowsRead, response: Response
) -> WorkflowOut:
    workflow = await service.get_workflow(session, principal, workflow_id)
    _with_etag(response, workflow.version)
    return service.workflow_out(workflow)


async def update_workflow(
    workflow_id: uuid.UUID,
    body: WorkflowUpdate,
    session: Session,
    principal: WorkflowsWrite,
    box: Box,
    response: Response,
    if_match: IfMatch = None,
) -> WorkflowOut:
    workflow = await service.update_workflow(
        session, principal, workflow_id, body, box, if_match=if_match
    )
    await session.flush()
    _with_etag(response, workflow.version)
    return service.workflow_out(workflow)


# One handler for both methods; the names keep each method's operation id in the OpenAPI.
router.patch(
    "/workflows/{workflow_id}",
    name="patch_workflow",
    responses=errors(400, 401, 403, 404, 409, 412),
)(update_workflow)
router.put(
    "/workflows/{workflow_id}",
    name="put_workflow",
    responses=errors(400, 401, 403, 404, 409, 412),
    description="Partial, as Django Automate documents PUT: only the fields sent change.",
)(update_workflow)


@router.delete(
    "/workflows/{workflow_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 409, 412),
)
async def delete_workflow(
    workflow_id: uuid.UUID, session: Session, principal: WorkflowsWrite, if_match: IfMatch = None
) -> Response:
    await service.delete_workflow(session, principal, workflow_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/workflows/{workflow_id}/versions", responses=errors(400, 401, 403, 404))
async def list_versions(
    workflow_id: uuid.UUID, session: Session, principal: WorkflowsRead, page: VersionPage
) -> Page[WorkflowVersionOut]:
    return await service.list_versions(session, principal, workflow_id, page)


@router.get("/workflows/{workflow_id}/versions/{version}", responses=errors(401, 403, 404))
async def get_version(
    workflow_id: uuid.UUID, version: VersionNumber, session: Session, principal: WorkflowsRead
) -> WorkflowVersionOut:
    row = await service.get_version(session, principal, workflow_id, version)
    return service.version_out(row)


@router.post(
    "/workflows/{workflow_id}/duplicate",
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def duplicate_workflow(
    workflow_id: uuid.UUID,
    session: Session,
    principal: WorkflowsReadWrite,
    box: Box,
    response: Response,
    body: DuplicateRequest | None = None,
) -> WorkflowOut:
    workflow = await service.duplicate_workflow(
        session, principal, workflow_id, body or DuplicateRequest(), box
    )
    await session.flush()
    _with_etag(response, workflow.version)
    response.headers["Location"] = f"/api/v1/workflows/{workflow.id}"
    return service.workflow_out(workflow)
