"""Project queries."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.governance.access import project_visible
from taskgate.models import Project


def projects_query(
    principal: Principal, *, status: str | None, search: str | None
) -> Select[tuple[Project]]:
    stmt = select(Project).where(project_visible(principal, Project.id))
    if status is not None:
        stmt = stmt.where(Project.status == status)
    if search:
        pattern = f"%{search.lower()}%"
        stmt = stmt.where(Project.name.ilike(pattern) | Project.slug.ilike(pattern))
    return stmt


def by_reference(reference: str) -> Select[tuple[Project]]:
    """The project named by id or by slug."""
    try:
        return select(Project).where(Project.id == uuid.UUID(reference))
    except ValueError:
        return select(Project).where(Project.slug == reference)


async def slug_taken(session: AsyncSession, slug: str) -> bool:
    return bool(await session.scalar(select(exists().where(Project.slug == slug))))


async def slugs_like(session: AsyncSession, base: str) -> set[str]:
    rows = await session.scalars(select(Project.slug).where(Project.slug.startswith(base)))
    return set(rows)
