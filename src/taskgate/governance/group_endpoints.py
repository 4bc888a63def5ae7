"""Group routes: groups, their state, and their members."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi import status as http

from taskgate.governance import group_service as service
from taskgate.governance.access_schemas import (
    GroupCreate,
    GroupFilters,
    GroupOut,
    GroupUpdate,
    MemberAdd,
    MemberOut,
)
from taskgate.http.auth import GroupsRead, GroupsWrite, Session
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["groups"], route_class=JsonRoute)
GroupPage = Annotated[
    PageParams, Depends(page_params(["created_at", "-created_at"], default="created_at"))
]


@router.get("/groups", responses=errors(400, 401, 403))
async def list_groups(
    session: Session,
    principal: GroupsRead,
    page: GroupPage,
    is_active: bool | None = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[GroupOut]:
    filters = GroupFilters(is_active=is_active, search=search)
    return await service.list_groups(session, principal, filters, page)


@router.post("/groups", status_code=http.HTTP_201_CREATED, responses=errors(400, 401, 403, 409))
async def create_group(
    body: GroupCreate, session: Session, principal: GroupsWrite, response: Response
) -> GroupOut:
    group = await service.create_group(session, principal, body)
    response.headers["Location"] = f"/api/v1/groups/{group.id}"
    return GroupOut.of(group)


@router.get("/groups/{group_id}", responses=errors(401, 403, 404))
async def get_group(group_id: uuid.UUID, session: Session, principal: GroupsRead) -> GroupOut:
    return GroupOut.of(await service.get_group(session, principal, group_id))


@router.patch("/groups/{group_id}", responses=errors(400, 401, 403, 404))
async def update_group(
    group_id: uuid.UUID, body: GroupUpdate, session: Session, principal: GroupsWrite
) -> GroupOut:
    return GroupOut.of(await service.update_group(session, principal, group_id, body))


@router.post("/groups/{group_id}/disable", responses=errors(401, 403, 404))
async def disable_group(group_id: uuid.UUID, session: Session, principal: GroupsWrite) -> GroupOut:
    return GroupOut.of(await service.set_active(session, principal, group_id, False))


@router.post("/groups/{group_id}/enable", responses=errors(401, 403, 404))
async def enable_group(group_id: uuid.UUID, session: Session, principal: GroupsWrite) -> GroupOut:
    return GroupOut.of(await service.set_active(session, principal, group_id, True))


@router.get("/groups/{group_id}/members", responses=errors(400, 401, 403, 404))
async def list_members(
    group_id: uuid.UUID, session: Session, principal: GroupsRead, page: GroupPage
) -> Page[MemberOut]:
    return await service.list_members(session, principal, group_id, page)


@router.post(
    "/groups/{group_id}/members",
    status_code=http.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def add_member(
    group_id: uuid.UUID, body: MemberAdd, session: Session, principal: GroupsWrite
) -> MemberOut:
    return await service.add_member(session, principal, group_id, body)


@router.delete(
    "/groups/{group_id}/members/{user_id}",
    status_code=http.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404),
)
async def remove_member(
    group_id: uuid.UUID, user_id: uuid.UUID, session: Session, principal: GroupsWrite
) -> None:
    await service.remove_member(session, principal, group_id, user_id)
