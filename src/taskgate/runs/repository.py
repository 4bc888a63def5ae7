"""Run, run log and job queries."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from taskgate.http.pagination import Listing
from taskgate.models import Run, RunLog, TaskJob
from taskgate.runs.schemas import JobFilters, RunFilters, RunLogFilters


def runs_listing(project_id: uuid.UUID, filters: RunFilters) -> Listing[Run]:
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
    return Listing(stmt, {"created_at": Run.created_at}, Run.id)


def logs_listing(run_id: uuid.UUID, filters: RunLogFilters) -> Listing[RunLog]:
    stmt = select(RunLog).where(RunLog.run_id == run_id)
    if filters.since is not None:
        stmt = stmt.where(RunLog.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(RunLog.created_at < filters.until)
    return Listing(stmt, {"created_at": RunLog.created_at}, RunLog.id)


def jobs_listing(project_id: uuid.UUID, filters: JobFilters) -> Listing[TaskJob]:
    """A project's jobs (everyone's), narrowed by ``filters``."""
    stmt = select(TaskJob).where(TaskJob.project_id == project_id)
    if filters.task_id is not None:
        stmt = stmt.where(TaskJob.task_id == filters.task_id)
    if filters.run_id is not None:
        stmt = stmt.where(TaskJob.run_id == filters.run_id)
    if filters.status:
        stmt = stmt.where(TaskJob.status == filters.status)
    return Listing(stmt, {"created_at": TaskJob.created_at}, TaskJob.id)
