"""Queue overview queries: live rows only, through the partial indexes, unless asked for more."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.models import Node, Task
from taskgate.runtime.nodes import NodeStatus
from taskgate.runtime.queue import FINISHED_STATUSES, JobStatus, jobs, sql_status

_UNFINISHED = ("QUEUED", "RUNNING", "PAUSED", "WAITING_APPROVAL")


@dataclass(frozen=True)
class QueuedGroup:
    neg_priority: int
    queued: int
    ready: int
    oldest_ready: datetime | None


@dataclass(frozen=True)
class LeasedGroup:
    neg_priority: int
    lease_owner: str | None
    leased: int


async def queued_groups(session: AsyncSession, now: datetime) -> list[QueuedGroup]:
    ready_after = case((jobs.c.run_after <= now, jobs.c.run_after))
    stmt = (
        select(
            jobs.c.neg_priority,
            func.count(),
            func.count(ready_after),
            func.min(ready_after),
        )
        .where(jobs.c.status == sql_status(JobStatus.QUEUED))
        .group_by(jobs.c.neg_priority)
    )
    rows = (await session.execute(stmt)).all()
    return [QueuedGroup(*row) for row in rows]


async def leased_groups(session: AsyncSession) -> list[LeasedGroup]:
    stmt = (
        select(jobs.c.neg_priority, jobs.c.lease_owner, func.count())
        .where(jobs.c.status == sql_status(JobStatus.LEASED))
        .group_by(jobs.c.neg_priority, jobs.c.lease_owner)
    )
    return [LeasedGroup(*row) for row in (await session.execute(stmt)).all()]


async def project_tasks(session: AsyncSession, project_id: uuid.UUID) -> dict[str, int]:
    """A project's unfinished tasks by status (through the project-led status index)."""
    stmt = (
        select(Task.status, func.count())
        .where(Task.project_id == project_id, Task.status.in_(_UNFINISHED))
        .group_by(Task.status)
    )
    return {status: int(n) for status, n in (await session.execute(stmt)).all()}


async def finished_counts(session: AsyncSession) -> dict[str, int]:
    """Counts every retained finished row: proportional to the retention window."""
    stmt = (
        select(jobs.c.status, func.count())
        .where(jobs.c.finished_at.is_not(None))
        .group_by(jobs.c.status)
    )
    counts = {status.value: 0 for status in FINISHED_STATUSES}
    counts.update({row[0]: row[1] for row in (await session.execute(stmt)).all()})
    return counts


async def alive_nodes(session: AsyncSession, since: datetime) -> list[Node]:
    stmt = (
        select(Node)
        .where(Node.heartbeat_at >= since, Node.status != NodeStatus.STOPPED.value)
        .order_by(Node.started_at, Node.id)
    )
    return list((await session.scalars(stmt)).all())
