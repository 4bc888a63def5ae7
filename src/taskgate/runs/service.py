"""Run and job use cases: list and read them, and let clients report runs of their own.

Every check goes through the authorization seam (taskgate.governance.access): a run or job
belongs to a project, and whoever may read runs (or jobs) there reads all of them; a member
appends logs to the runs it reported, an admin to anyone's."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.errors import NotFound, ValidationFailed
from taskgate.events.outbox import record_event
from taskgate.governance.access import authorize
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.ids import new_id
from taskgate.models import ChatSession, Run, RunLog, Task, TaskJob
from taskgate.runs import repository as repo
from taskgate.runs.schemas import (
    JobFilters,
    JobOut,
    RunCreate,
    RunFilters,
    RunLogFilters,
    RunLogOut,
    RunLogsIn,
    RunOut,
)

_FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"})


async def list_runs(
    session: AsyncSession, principal: Principal, filters: RunFilters, page: PageParams
) -> Page[RunOut]:
    """The runs of the request's project (everyone's: ``run:read`` reads them all)."""
    listing = repo.runs_listing(authorize(principal, "run:read"), filters)
    return await page_of(session, listing, page, RunOut.model_validate)


async def list_run_logs(
    session: AsyncSession,
    principal: Principal,
    run_id: uuid.UUID,
    filters: RunLogFilters,
    page: PageParams,
) -> Page[RunLogOut]:
    run = await get_run(session, principal, run_id)
    return await page_of(
        session, repo.logs_listing(run.id, filters), page, RunLogOut.model_validate
    )


async def list_jobs(
    session: AsyncSession, principal: Principal, filters: JobFilters, page: PageParams
) -> Page[JobOut]:
    """The jobs of the request's project."""
    listing = repo.jobs_listing(authorize(principal, "job:read"), filters)
    return await page_of(session, listing, page, JobOut.model_validate)


async def _run(
    session: AsyncSession, principal: Principal, run_id: uuid.UUID, permission: str
) -> Run:
    run = await session.get(Run, run_id)
    if run is None:
        raise NotFound("Run not found.")
    authorize(
        principal, permission, project_id=run.project_id, owner_id=run.owner_id, resource_id=run.id
    )
    return run


async def get_run(session: AsyncSession, principal: Principal, run_id: uuid.UUID) -> Run:
    """A run of a project ``principal`` may read runs in; NotFound when missing or in a
    project it does not see."""
    return await _run(session, principal, run_id, "run:read")


async def get_job(session: AsyncSession, principal: Principal, job_id: uuid.UUID) -> TaskJob:
    job = await session.get(TaskJob, job_id)
    if job is None:
        raise NotFound("Job not found.")
    authorize(
        principal, "job:read", project_id=job.project_id, owner_id=job.owner_id, resource_id=job.id
    )
    return job


async def create_run(session: AsyncSession, principal: Principal, body: RunCreate) -> Run:
    """Report a run in the request's project; what it points at must be in that project."""
    project_id = authorize(principal, "run:create")
    session_id = body.session_id
    if body.task_id is not None:
        task = await session.get(Task, body.task_id)
        if task is None or task.project_id != project_id:
            raise ValidationFailed.field("task_id", "no such task")
        session_id = session_id or task.session_id
    if body.session_id is not None:
        chat = await session.get(ChatSession, body.session_id)
        if chat is None or chat.owner_id != principal.user_id or chat.project_id != project_id:
            raise ValidationFailed.field("session_id", "no such session")
    if body.parent_run_id is not None:
        parent = await session.get(Run, body.parent_run_id)
        if parent is None or parent.project_id != project_id:
            raise ValidationFailed.field("parent_run_id", "no such run")
    now = utcnow()
    run = Run(
        id=new_id(),
        owner_id=principal.user_id,
        project_id=project_id,
        task_id=body.task_id,
        session_id=session_id,
        parent_run_id=body.parent_run_id,
        name=body.name,
        kind="external",
        status=body.status,
        attempt=1,
        transcript={},
        usage={},
        started_at=now,
        finished_at=now if body.status in _FINAL else None,
    )
    session.add(run)
    await record_event(
        session,
        "run.created",
        owner_id=principal.user_id,
        project_id=project_id,
        run_id=run.id,
        task_id=run.task_id,
        session_id=run.session_id,
        payload={"name": run.name, "status": run.status, "kind": run.kind},
    )
    await audit(
        session,
        "run.create",
        principal,
        resource_type="run",
        resource_id=run.id,
        project_id=project_id,
    )
    return run


async def append_logs(
    session: AsyncSession, principal: Principal, run_id: uuid.UUID, body: RunLogsIn
) -> int:
    """``run:update``: a member on the runs it reported, an admin on anyone's."""
    run = await _run(session, principal, run_id, "run:update")
    now = utcnow()
    session.add_all(
        RunLog(
            run_id=run.id,
            level=entry.level,
            message=entry.message,
            data=entry.data or {},
            created_at=now,
        )
        for entry in body.entries
    )
    return len(body.entries)
