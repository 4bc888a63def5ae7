"""Routes for runs, their logs, and the jobs tasks dispatched."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from taskgate.http.auth import Session, TasksRead, TasksWrite, TasksWriteRead
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.http.params import Instant
from taskgate.openapi import errors
from taskgate.runs import service
from taskgate.runs.schemas import (
    JobFilters,
    JobOut,
    RunCreate,
    RunDetail,
    RunFilters,
    RunLogFilters,
    RunLogOut,
    RunLogsAppended,
    RunLogsIn,
    RunOut,
    RunStatus,
)

router = APIRouter(prefix="/api/v1", route_class=JsonRoute)
NewestFirst = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]
OldestFirst = Annotated[
    PageParams, Depends(page_params(["created_at", "-created_at"], default="created_at"))
]


@router.get("/runs", tags=["runs"], responses=errors(400, 401, 403, 404))
async def list_runs(
    session: Session,
    principal: TasksRead,
    page: NewestFirst,
    task_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    parent_run_id: uuid.UUID | None = None,
    status: RunStatus | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> Page[RunOut]:
    filters = RunFilters(task_id, job_id, session_id, parent_run_id, status, since, until)
    return await service.list_runs(session, principal, filters, page)


@router.post(
    "/runs",
    tags=["runs"],
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def create_run(
    body: RunCreate, response: Response, session: Session, principal: TasksWrite
) -> RunDetail:
    run = await service.create_run(session, principal, body)
    response.headers["Location"] = f"/api/v1/runs/{run.id}"
    return RunDetail.model_validate(run)


@router.get("/runs/{run_id}", tags=["runs"], responses=errors(401, 403, 404))
async def get_run(run_id: uuid.UUID, session: Session, principal: TasksRead) -> RunDetail:
    return RunDetail.model_validate(await service.get_run(session, principal, run_id))


@router.post(
    "/runs/{run_id}/logs",
    tags=["runs"],
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def append_run_logs(
    run_id: uuid.UUID, body: RunLogsIn, session: Session, principal: TasksWriteRead
) -> RunLogsAppended:
    return RunLogsAppended(appended=await service.append_logs(session, principal, run_id, body))


@router.get("/runs/{run_id}/logs", tags=["runs"], responses=errors(400, 401, 403, 404))
async def run_logs(
    run_id: uuid.UUID,
    session: Session,
    principal: TasksRead,
    page: OldestFirst,
    since: Instant | None = None,
    until: Instant | None = None,
) -> Page[RunLogOut]:
    filters = RunLogFilters(since, until)
    return await service.list_run_logs(session, principal, run_id, filters, page)


@router.get("/jobs", tags=["jobs"], responses=errors(400, 401, 403, 404))
async def list_jobs(
    session: Session,
    principal: TasksRead,
    page: NewestFirst,
    task_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    status: str | None = None,
) -> Page[JobOut]:
    filters = JobFilters(task_id, run_id, status)
    return await service.list_jobs(session, principal, filters, page)


@router.get("/jobs/{job_id}", tags=["jobs"], responses=errors(401, 403, 404))
async def get_job(job_id: uuid.UUID, session: Session, principal: TasksRead) -> JobOut:
    return JobOut.model_validate(await service.get_job(session, principal, job_id))
