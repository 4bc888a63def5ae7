"""Role routes: the roles, role bindings and access rules."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi import status as http

from taskgate.governance import binding_service, rule_service
from taskgate.governance.access_schemas import (
    BindingCreate,
    BindingFilters,
    BindingOut,
    RoleList,
    RoleName,
    RoleOut,
    RuleCreate,
    RuleFilters,
    RuleOut,
    RuleUpdate,
)
from taskgate.governance.roles import ROLES, SYSTEM_GRANTS
from taskgate.http.auth import (
    AccessRulesRead,
    AccessRulesWrite,
    CurrentPrincipal,
    RoleBindingsRead,
    RoleBindingsWrite,
    Session,
)
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import Page, PageParams, page_params
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", route_class=JsonRoute)
CreatedPage = Annotated[
    PageParams, Depends(page_params(["created_at", "-created_at"], default="created_at"))
]
_ROLES = RoleList(
    results=[RoleOut.of(role, SYSTEM_GRANTS.get(name)) for name, role in ROLES.items()]
)


@router.get("/roles", tags=["roles"], responses=errors(401))
async def list_roles(principal: CurrentPrincipal) -> RoleList:
    """The five roles and the permissions each grants (a fixed table)."""
    return _ROLES


@router.get("/role-bindings", tags=["roles"], responses=errors(400, 401, 403, 404))
async def list_role_bindings(
    session: Session,
    principal: RoleBindingsRead,
    page: CreatedPage,
    scope_type: Literal["system", "project"] = "project",
    scope_id: Annotated[
        uuid.UUID | None,
        Query(description="The project (default: the request's project)."),
    ] = None,
    subject_type: Literal["user", "group"] | None = None,
    subject_id: uuid.UUID | None = None,
    role: RoleName | None = None,
) -> Page[BindingOut]:
    filters = BindingFilters(scope_type, scope_id, subject_type, subject_id, role)
    return await binding_service.list_bindings(session, principal, filters, page)


@router.post(
    "/role-bindings",
    tags=["roles"],
    status_code=http.HTTP_201_CREATED,
    responses=errors(400, 401, 403, 404, 409),
)
async def create_role_binding(
    body: BindingCreate, session: Session, principal: RoleBindingsWrite, response: Response
) -> BindingOut:
    binding = await binding_service.create_binding(session, principal, body)
    response.headers["Location"] = f"/api/v1/role-bindings/{binding.id}"
    return BindingOut.of(binding)


@router.delete(
    "/role-bindings/{binding_id}",
    tags=["roles"],
    status_code=http.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 409),
)
async def delete_role_binding(
    binding_id: uuid.UUID, session: Session, principal: RoleBindingsWrite
) -> None:
    await binding_service.delete_binding(session, principal, binding_id)


@router.get("/access-rules", tags=["access-rules"], responses=errors(400, 401, 403))
async def list_access_rules(
    session: Session,
    principal: AccessRulesRead,
    page: CreatedPage,
    subject_type: Literal["user", "group", "project"] | None = None,
    subject_id: uuid.UUID | None = None,
    effect: Literal["allow", "deny"] | None = None,
) -> Page[RuleOut]:
    filters = RuleFilters(subject_type, subject_id, effect)
    return await rule_service.list_rules(session, principal, filters, page)


@router.post(
    "/access-rules",
    tags=["access-rules"],
    status_code=http.HTTP_201_CREATED,
    responses=errors(400, 401, 403),
)
async def create_access_rule(
    body: RuleCreate, session: Session, principal: AccessRulesWrite, response: Response
) -> RuleOut:
    rule = await rule_service.create_rule(session, principal, body)
    response.headers["Location"] = f"/api/v1/access-rules/{rule.id}"
    return RuleOut.of(rule)


@router.get("/access-rules/{rule_id}", tags=["access-rules"], responses=errors(401, 403, 404))
async def get_access_rule(
    rule_id: uuid.UUID, session: Session, principal: AccessRulesRead
) -> RuleOut:
    return RuleOut.of(await rule_service.get_rule(session, principal, rule_id))


@router.patch(
    "/access-rules/{rule_id}", tags=["access-rules"], responses=errors(400, 401, 403, 404)
)
async def update_access_rule(
    rule_id: uuid.UUID, body: RuleUpdate, session: Session, principal: AccessRulesWrite
) -> RuleOut:
    return RuleOut.of(await rule_service.update_rule(session, principal, rule_id, body))


@router.delete(
    "/access-rules/{rule_id}",
    tags=["access-rules"],
    status_code=http.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404),
)
async def delete_access_rule(
    rule_id: uuid.UUID, session: Session, principal: AccessRulesWrite
) -> None:
    await rule_service.delete_rule(session, principal, rule_id)
