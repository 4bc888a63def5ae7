"""Routes for runs, their logs, and the jobs tasks dispatched."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from taskgate.http.auth import CurrentPrincipal, Session
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params, paginate
from taskgate.http.params import Instant
from taskgate.models import Run, RunLog, TaskJob
from taskgate.openapi import errors
from taskgate.runs import repository as repo
from taskgate.runs import service
from taskgate.runs.schemas import (
    JobOut,
    RunCreate,
    RunDetail,
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
    principal: CurrentPrincipal,
    page: NewestFirst,
    task_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    parent_run_id: uuid.UUID | None = None,
    status: RunStatus | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> Page[RunOut]:
    filters = repo.RunFilters(task_id, job_id, session_id, parent_run_id, status, since, until)
    rows, next_link, total = await paginate(
        session,
        service.runs_query(principal, filters),
        page,
        {"created_at": Run.created_at},
        Run.id,
    )
    return Page(results=[RunOut.model_validate(r) for r in rows], next=next_link, count=total)


@router.post(
    "/runs",
    tags=["runs"],
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def create_run(
    body: RunCreate, response: Response, session: Session, principal: CurrentPrincipal
) -> RunDetail:
    run = await service.create_run(session, principal, body)
    response.headers["Location"] = f"/api/v1/runs/{run.id}"
    return RunDetail.model_validate(run)


@router.get("/runs/{run_id}", tags=["runs"], responses=errors(401, 403, 404))
async def get_run(run_id: uuid.UUID, session: Session, principal: CurrentPrincipal) -> RunDetail:
    return RunDetail.model_validate(await service.get_run(session, principal, run_id))


@router.post(
    "/runs/{run_id}/logs",
    tags=["runs"],
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def append_run_logs(
    run_id: uuid.UUID, body: RunLogsIn, session: Session, principal: CurrentPrincipal
) -> RunLogsAppended:
    return RunLogsAppended(appended=await service.append_logs(session, principal, run_id, body))


@router.get("/runs/{run_id}/logs", tags=["runs"], responses=errors(400, 401, 403, 404))
async def run_logs(
    run_id: uuid.UUID,
    session: Session,
    principal: CurrentPrincipal,
    page: OldestFirst,
    since: Instant | None = None,
    until: Instant | None = None,
) -> Page[RunLogOut]:
    run = await service.get_run(session, principal, run_id)
    rows, next_link, total = await paginate(
        session,
        repo.logs_query(run.id, since, until),
        page,
        {"created_at": RunLog.created_at},
        RunLog.id,
    )
    return Page(results=[RunLogOut.model_validate(r) for r in rows], next=next_link, count=total)


@router.get("/jobs", tags=["jobs"], responses=errors(400, 401, 403, 404))
async def list_jobs(
    session: Session,
    principal: CurrentPrincipal,
    page: NewestFirst,
    task_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    status: str | None = None,
) -> Page[JobOut]:
    rows, next_link, total = await paginate(
        session,
        service.jobs_query(principal, repo.JobFilters(task_id, run_id, status)),
        page,
        {"created_at": TaskJob.created_at},
        TaskJob.id,
    )
    return Page(results=[JobOut.model_validate(r) for r in rows], next=next_link, count=total)


@router.get("/jobs/{job_id}", tags=["jobs"], responses=errors(401, 403, 404))
async def get_job(job_id: uuid.UUID, session: Session, principal: CurrentPrincipal) -> JobOut:
    return JobOut.model_validate(await service.get_job(session, principal, job_id))
