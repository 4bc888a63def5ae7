"""Queries of groups, memberships, role bindings and access rules."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.governance.access_schemas import GroupFilters, RuleFilters
from taskgate.http.pagination import Listing
from taskgate.models import AccessRule, Group, GroupMember, RoleBinding, User


def groups_listing(member: uuid.UUID | None, filters: GroupFilters) -> Listing[Group]:
    """Groups; only those ``member`` belongs to when it is given."""
    stmt = select(Group)
    if member is not None:
        stmt = stmt.where(
            Group.id.in_(select(GroupMember.group_id).where(GroupMember.user_id == member))
        )
    if filters.is_active is not None:
        stmt = stmt.where(Group.is_active.is_(filters.is_active))
    if filters.search:
        pattern = f"%{filters.search.lower()}%"
        stmt = stmt.where(Group.name.ilike(pattern) | Group.slug.ilike(pattern))
    return Listing(stmt, {"created_at": Group.created_at}, Group.id)


async def is_member(session: AsyncSession, group_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(exists().where(GroupMember.group_id == group_id, GroupMember.user_id == user_id))
    )
    return bool(found)


async def membership(
    session: AsyncSession, group_id: uuid.UUID, user_id: uuid.UUID
) -> GroupMember | None:
    found: GroupMember | None = await session.scalar(
        select(GroupMember).where(GroupMember.group_id == group_id, GroupMember.user_id == user_id)
    )
    return found


def members_listing(group_id: uuid.UUID) -> Listing[GroupMember]:
    stmt = select(GroupMember).where(GroupMember.group_id == group_id)
    return Listing(stmt, {"created_at": GroupMember.created_at}, GroupMember.id)


async def usernames(session: AsyncSession, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await session.execute(select(User.id, User.username).where(User.id.in_(user_ids)))
    return {row.id: row.username for row in rows}


async def slugs_like(session: AsyncSession, base: str) -> set[str]:
    rows = await session.scalars(select(Group.slug).where(Group.slug.startswith(base)))
    return set(rows)


def bindings_query(
    project_id: uuid.UUID | None,
    *,
    subject_type: str | None,
    subject_id: uuid.UUID | None,
    role: str | None,
) -> Select[tuple[RoleBinding]]:
    """The bindings of one project, or (``project_id`` None) those at system scope."""
    stmt = select(RoleBinding).where(
        RoleBinding.project_id.is_(None)
        if project_id is None
        else RoleBinding.project_id == project_id
    )
    if subject_type is not None:
        stmt = stmt.where(RoleBinding.subject_type == subject_type)
    if subject_id is not None:
        stmt = stmt.where(RoleBinding.subject_id == subject_id)
    if role is not None:
        stmt = stmt.where(RoleBinding.role == role)
    return stmt


async def binding_exists(
    session: AsyncSession,
    subject_type: str,
    subject_id: uuid.UUID,
    role: str,
    project_id: uuid.UUID | None,
) -> bool:
    stmt = bindings_query(project_id, subject_type=subject_type, subject_id=subject_id, role=role)
    return bool(await session.scalar(select(stmt.exists())))


async def other_bindings(
    session: AsyncSession, binding: RoleBinding, *, subject_type: str | None = None
) -> int:
    """How many bindings of ``binding``'s role and scope there are besides it."""
    stmt = bindings_query(
        binding.project_id, subject_type=subject_type, subject_id=None, role=binding.role
    ).where(RoleBinding.id != binding.id)
    return int(await session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


def bindings_listing(
    project_id: uuid.UUID | None,
    *,
    subject_type: str | None,
    subject_id: uuid.UUID | None,
    role: str | None,
) -> Listing[RoleBinding]:
    stmt = bindings_query(project_id, subject_type=subject_type, subject_id=subject_id, role=role)
    return Listing(stmt, {"created_at": RoleBinding.created_at}, RoleBinding.id)


def rules_listing(filters: RuleFilters) -> Listing[AccessRule]:
    stmt = select(AccessRule)
    if filters.subject_type is not None:
        stmt = stmt.where(AccessRule.subject_type == filters.subject_type)
    if filters.subject_id is not None:
        stmt = stmt.where(AccessRule.subject_id == filters.subject_id)
    if filters.effect is not None:
        stmt = stmt.where(AccessRule.effect == filters.effect)
    return Listing(stmt, {"created_at": AccessRule.created_at}, AccessRule.id)
