"""Run, run log and job queries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, select

from taskgate.models import Run, RunLog, TaskJob


@dataclass(frozen=True)
class RunFilters:
    task_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    parent_run_id: uuid.UUID | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def runs_query(
    owner_id: uuid.UUID, project_id: uuid.UUID | None, filters: RunFilters
) -> Select[tuple[Run]]:
    stmt = select(Run).where(Run.project_id == project_id, Run.owner_id == owner_id)
    if filters.task_id is not None:
        stmt = stmt.where(Run.task_id == filters.task_id)
    if filters.job_id is not None:
        job_run = select(TaskJob.run_id).where(TaskJob.id == filters.job_id).scalar_subquery()
        stmt = stmt.where(Run.id == job_run)
    if filters.session_id is not None:
        stmt = stmt.where(Run.session_id == filters.session_id)
    if filters.parent_run_id is not None:
        stmt = stmt.where(Run.parent_run_id == filters.parent_run_id)
    if filters.status:
        stmt = stmt.where(Run.status == filters.status)
    if filters.since is not None:
        stmt = stmt.where(Run.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(Run.created_at < filters.until)
    return stmt


def logs_query(
    run_id: uuid.UUID, since: datetime | None, until: datetime | None
) -> Select[tuple[RunLog]]:
    stmt = select(RunLog).where(RunLog.run_id == run_id)
    if since is not None:
        stmt = stmt.where(RunLog.created_at >= since)
    if until is not None:
        stmt = stmt.where(RunLog.created_at < until)
    return stmt


def jobs_query(
    owner_id: uuid.UUID,
    project_id: uuid.UUID | None,
    task_id: uuid.UUID | None,
    run_id: uuid.UUID | None,
    status: str | None,
) -> Select[tuple[TaskJob]]:
    stmt = select(TaskJob).where(TaskJob.project_id == project_id, TaskJob.owner_id == owner_id)
    if task_id is not None:
        stmt = stmt.where(TaskJob.task_id == task_id)
    if run_id is not None:
        stmt = stmt.where(TaskJob.run_id == run_id)
    if status:
        stmt = stmt.where(TaskJob.status == status)
    return stmt
