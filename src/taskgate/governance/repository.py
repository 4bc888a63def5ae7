"""Project queries."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.governance.access import project_visible
from taskgate.governance.schemas import ProjectFilters
from taskgate.http.pagination import Listing
from taskgate.models import Project


def projects_listing(principal: Principal, filters: ProjectFilters) -> Listing[Project]:
    stmt = select(Project).where(project_visible(principal, Project.id))
    if filters.status is not None:
        stmt = stmt.where(Project.status == filters.status)
    if filters.search:
        pattern = f"%{filters.search.lower()}%"
        stmt = stmt.where(Project.name.ilike(pattern) | Project.slug.ilike(pattern))
    return Listing(stmt, {"created_at": Project.created_at}, Project.id)


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
