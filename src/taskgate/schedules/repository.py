"""Schedule queries, including the scheduler's claim of due rows."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.http.pagination import Listing
from taskgate.models import Project, Schedule, ScheduleRun, User
from taskgate.schedules.schemas import ScheduleFilters


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[Schedule]:
    """Due schedules, locked for this transaction. On PostgreSQL rows another scheduler holds
    are skipped, so several schedulers share the work; SQLite serialises write transactions,
    so the claim there is the whole database's write lock."""
    stmt = (
        select(Schedule)
        .where(Schedule.due_at <= now, Schedule.status == "ACTIVE")
        .order_by(Schedule.due_at)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if _is_postgres(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return list((await session.scalars(stmt)).all())


async def schedule_of(
    session: AsyncSession, schedule_id: uuid.UUID, *, lock: bool = False
) -> Schedule | None:
    """The schedule; with ``lock`` it waits for a scheduler firing it to finish first."""
    stmt = select(Schedule).where(Schedule.id == schedule_id)
    if lock:
        stmt = stmt.execution_options(populate_existing=True)
        if _is_postgres(session):
            stmt = stmt.with_for_update()
    result: Schedule | None = await session.scalar(stmt)
    return result


async def live_schedule_count(session: AsyncSession, owner_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Schedule)
        .where(Schedule.owner_id == owner_id, Schedule.status != "COMPLETED")
    )
    return int(count or 0)


def schedules_listing(project_id: uuid.UUID, filters: ScheduleFilters) -> Listing[Schedule]:
    """The schedules of a project, everyone's."""
    stmt = select(Schedule).where(Schedule.project_id == project_id)
    if filters.status:
        stmt = stmt.where(Schedule.status == filters.status)
    if filters.search:
        stmt = stmt.where(Schedule.name.ilike(f"%{filters.search}%"))
    columns = {"created_at": Schedule.created_at, "name": Schedule.name}
    return Listing(stmt, columns, Schedule.id)


def runs_listing(schedule_id: uuid.UUID, *, status: str | None) -> Listing[ScheduleRun]:
    stmt = select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id)
    if status:
        stmt = stmt.where(ScheduleRun.status == status)
    return Listing(stmt, {"scheduled_for": ScheduleRun.scheduled_for}, ScheduleRun.id)


async def unsettled_runs(session: AsyncSession, schedule_ids: list[uuid.UUID]) -> list[ScheduleRun]:
    """Fired runs whose task or execution had not finished when last looked at."""
    rows = await session.scalars(
        select(ScheduleRun).where(
            ScheduleRun.schedule_id.in_(schedule_ids),
            ScheduleRun.status == "fired",
            ScheduleRun.outcome.is_(None),
        )
    )
    return list(rows.all())


async def run_for(
    session: AsyncSession, schedule_id: uuid.UUID, scheduled_for: datetime
) -> ScheduleRun | None:
    result: ScheduleRun | None = await session.scalar(
        select(ScheduleRun).where(
            ScheduleRun.schedule_id == schedule_id, ScheduleRun.scheduled_for == scheduled_for
        )
    )
    return result


async def owners(session: AsyncSession, owner_ids: set[uuid.UUID]) -> dict[uuid.UUID, User]:
    rows = await session.scalars(select(User).where(User.id.in_(owner_ids)))
    return {user.id: user for user in rows}


async def owner_of(session: AsyncSession, owner_id: uuid.UUID) -> User | None:
    return await session.get(User, owner_id)


async def disabled_projects(session: AsyncSession, project_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these projects are disabled (their schedules do not fire)."""
    if not project_ids:
        return set()
    rows = await session.scalars(
        select(Project.id).where(Project.id.in_(project_ids), Project.status == "disabled")
    )
    return set(rows)


async def owner_timezone(session: AsyncSession, owner_id: uuid.UUID) -> str | None:
    zone: str | None = await session.scalar(select(User.timezone).where(User.id == owner_id))
    return zone


async def earliest_due(session: AsyncSession) -> datetime | None:
    due: datetime | None = await session.scalar(
        select(func.min(Schedule.due_at)).where(Schedule.status == "ACTIVE")
    )
    return due


async def counts_by_status(
    session: AsyncSession, owner_id: uuid.UUID | None, project_id: uuid.UUID | None
) -> dict[str, int]:
    stmt = select(Schedule.status, func.count()).group_by(Schedule.status)
    if owner_id is not None:
        stmt = stmt.where(Schedule.project_id == project_id, Schedule.owner_id == owner_id)
    return {status: int(n) for status, n in (await session.execute(stmt)).all()}


async def next_due(
    session: AsyncSession, owner_id: uuid.UUID | None, project_id: uuid.UUID | None
) -> tuple[uuid.UUID, datetime] | None:
    stmt = (
        select(Schedule.id, Schedule.due_at)
        .where(Schedule.due_at.is_not(None), Schedule.status == "ACTIVE")
        .order_by(Schedule.due_at)
        .limit(1)
    )
    if owner_id is not None:
        stmt = stmt.where(Schedule.project_id == project_id, Schedule.owner_id == owner_id)
    row = (await session.execute(stmt)).first()
    return (row[0], row[1]) if row is not None and row[1] is not None else None


async def due_count(
    session: AsyncSession,
    now: datetime,
    owner_id: uuid.UUID | None,
    project_id: uuid.UUID | None,
) -> int:
    stmt = (
        select(func.count())
        .select_from(Schedule)
        .where(Schedule.due_at <= now, Schedule.status == "ACTIVE")
    )
    if owner_id is not None:
        stmt = stmt.where(Schedule.project_id == project_id, Schedule.owner_id == owner_id)
    return int(await session.scalar(stmt) or 0)
