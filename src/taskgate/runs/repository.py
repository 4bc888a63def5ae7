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


@dataclass(frozen=True)
class JobFilters:
    task_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    status: str | None = None


def runs_query(project_id: uuid.UUID, filters: RunFilters) -> Select[tuple[Run]]:
    """A project's runs (everyone's), narrowed by ``filters``."""
    stmt = select(Run).where(Run.project_id == project_id)
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


def jobs_query(project_id: uuid.UUID, filters: JobFilters) -> Select[tuple[TaskJob]]:
    """A project's jobs (everyone's), narrowed by ``filters``."""
    stmt = select(TaskJob).where(TaskJob.project_id == project_id)
    if filters.task_id is not None:
        stmt = stmt.where(TaskJob.task_id == filters.task_id)
    if filters.run_id is not None:
        stmt = stmt.where(TaskJob.run_id == filters.run_id)
    if filters.status:
        stmt = stmt.where(TaskJob.status == filters.status)
    return stmt
