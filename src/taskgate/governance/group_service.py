"""Group use cases. Groups are instance-level and hold users only (no nesting, so no
cycles); instance administrators manage them and their members. Every signed-in user sees
the groups it belongs to (and their members); system-scope readers see every group.
Disabling a group keeps its members and bindings, which then grant nothing."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.errors import Conflict, NotFound, ValidationFailed
from taskgate.governance import access_repository as repo
from taskgate.governance.access import authorize_system, may
from taskgate.governance.access_schemas import (
    GroupCreate,
    GroupFilters,
    GroupOut,
    GroupUpdate,
    MemberAdd,
    MemberOut,
)
from taskgate.governance.changes import changed
from taskgate.governance.service import slugify
from taskgate.http.pagination import Page, PageParams, page_of, paginate
from taskgate.models import Group, GroupMember, User


async def list_groups(
    session: AsyncSession, principal: Principal, filters: GroupFilters, page: PageParams
) -> Page[GroupOut]:
    """Every group for a system-scope reader, else the caller's own."""
    member = None if may(principal, "group:read", None) else principal.user_id
    return await page_of(session, repo.groups_listing(member, filters), page, GroupOut.of)


async def get_group(session: AsyncSession, principal: Principal, group_id: uuid.UUID) -> Group:
    """The group, if ``principal`` may see it (404 otherwise)."""
    group = await session.get(Group, group_id)
    if group is None or not (
        may(principal, "group:read", None)
        or await repo.is_member(session, group.id, principal.user_id)
    ):
        raise NotFound("Group not found.")
    return group


async def _managed(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, permission: str
) -> Group:
    authorize_system(principal, permission, resource_id=group_id)
    group = await session.get(Group, group_id)
    if group is None:
        raise NotFound("Group not found.")
    return group


async def _free_slug(session: AsyncSession, name: str) -> str:
    base = slugify(name)[:90]
    taken = await repo.slugs_like(session, base)
    n = 2
    slug = base
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug


async def create_group(session: AsyncSession, principal: Principal, body: GroupCreate) -> Group:
    authorize_system(principal, "group:create")
    if (body.external_source is None) != (body.external_id is None):
        raise ValidationFailed.field("external_id", "send external_source and external_id together")
    group = Group(
        slug=body.slug or await _free_slug(session, body.name),
        name=body.name,
        description=body.description,
        is_active=True,
        managed_by="local",
        external_source=body.external_source,
        external_id=body.external_id,
        created_by=principal.user_id,
    )
    session.add(group)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("A group with this slug or external id exists.") from exc
    await audit(
        session,
        "group.create",
        principal,
        resource_type="group",
        resource_id=group.id,
        system_scope=True,
        detail={"slug": group.slug},
    )
    return group


async def update_group(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, body: GroupUpdate
) -> Group:
    group = await _managed(session, principal, group_id, "group:update")
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes:
        if changes["name"] is None:
            raise ValidationFailed.field("name", "may not be null")
        group.name = changes["name"]
    if "description" in changes:
        group.description = changes["description"] or ""
    await session.flush()
    await audit(
        session,
        "group.update",
        principal,
        resource_type="group",
        resource_id=group.id,
        system_scope=True,
        detail={"fields": sorted(changes)},
    )
    return group


async def set_active(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, active: bool
) -> Group:
    group = await _managed(session, principal, group_id, "group:disable")
    if group.is_active != active:
        group.is_active = active
        await session.flush()
        await changed(session)
    await audit(
        session,
        "group.enable" if active else "group.disable",
        principal,
        resource_type="group",
        resource_id=group.id,
        system_scope=True,
    )
    return group


async def list_members(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, page: PageParams
) -> Page[MemberOut]:
    group = await get_group(session, principal, group_id)
    window = await paginate(session, repo.members_listing(group.id), page)
    names = await repo.usernames(session, [member.user_id for member in window.rows])
    return window.page([MemberOut.of(m, names.get(m.user_id, "")) for m in window.rows])


async def add_member(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, body: MemberAdd
) -> MemberOut:
    group = await _managed(session, principal, group_id, "group:update")
    user = await session.get(User, body.user_id)
    if user is None:
        raise ValidationFailed.field("user_id", "no such user")
    if await repo.is_member(session, group.id, user.id):
        raise Conflict(f"{user.username!r} is a member of {group.slug!r} already.")
    member = GroupMember(group_id=group.id, user_id=user.id, added_by=principal.user_id)
    session.add(member)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{user.username!r} is a member of {group.slug!r} already.") from exc
    await changed(session)
    await audit(
        session,
        "group.member_add",
        principal,
        resource_type="group",
        resource_id=group.id,
        system_scope=True,
        detail={"user_id": str(user.id), "username": user.username},
    )
    return MemberOut.of(member, user.username)


async def remove_member(
    session: AsyncSession, principal: Principal, group_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    group = await _managed(session, principal, group_id, "group:update")
    member = await repo.membership(session, group.id, user_id)
    if member is None:
        raise NotFound("No such member of the group.")
    await session.delete(member)
    await session.flush()
    await changed(session)
    await audit(
        session,
        "group.member_remove",
        principal,
        resource_type="group",
        resource_id=group.id,
        system_scope=True,
        detail={"user_id": str(user_id)},
    )
