"""Project routes: list, create, read, change, disable and enable (never delete)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi import status as http

from taskgate.governance import service
from taskgate.governance.schemas import ProjectCreate, ProjectFilters, ProjectOut, ProjectUpdate
from taskgate.http.app_state import AppSettings
from taskgate.http.auth import ProjectsRead, ProjectsWrite, ProjectsWriteRead, Session
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["projects"], route_class=JsonRoute)
ProjectPage = Annotated[
    PageParams, Depends(page_params(["created_at", "-created_at"], default="created_at"))
]


@router.get("/projects", responses=errors(400, 401, 403))
async def list_projects(
    session: Session,
    principal: ProjectsRead,
    page: ProjectPage,
    status: Literal["active", "disabled"] | None = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ProjectOut]:
    filters = ProjectFilters(status=status, search=search)
    return await service.list_projects(session, principal, filters, page)


@router.post("/projects", status_code=http.HTTP_201_CREATED, responses=errors(400, 401, 403, 409))
async def create_project(
    body: ProjectCreate,
    session: Session,
    principal: ProjectsWrite,
    settings: AppSettings,
    response: Response,
) -> ProjectOut:
    project = await service.create_project(session, principal, body, settings.governance)
    response.headers["Location"] = f"/api/v1/projects/{project.id}"
    return ProjectOut.of(project)


@router.get("/projects/{project_id}", responses=errors(401, 403, 404))
async def get_project(
    project_id: uuid.UUID, session: Session, principal: ProjectsRead
) -> ProjectOut:
    return ProjectOut.of(await service.get_project(session, principal, project_id))


@router.patch("/projects/{project_id}", responses=errors(400, 401, 403, 404))
async def update_project(
    project_id: uuid.UUID, body: ProjectUpdate, session: Session, principal: ProjectsWriteRead
) -> ProjectOut:
    return ProjectOut.of(await service.update_project(session, principal, project_id, body))


@router.post("/projects/{project_id}/disable", responses=errors(401, 403, 404))
async def disable_project(
    project_id: uuid.UUID, session: Session, principal: ProjectsWriteRead
) -> ProjectOut:
    return ProjectOut.of(await service.set_status(session, principal, project_id, "disabled"))


@router.post("/projects/{project_id}/enable", responses=errors(401, 403, 404))
async def enable_project(
    project_id: uuid.UUID, session: Session, principal: ProjectsWriteRead
) -> ProjectOut:
    return ProjectOut.of(await service.set_status(session, principal, project_id, "active"))
