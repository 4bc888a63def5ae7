"""The five roles: each grants what the one below it does and more, every permission of
every resource belongs to some role, and ``GET /api/v1/roles`` shows the table."""

from __future__ import annotations

import itertools

import httpx

from taskgate.governance.roles import (
    INSTANCE_PERMISSIONS,
    PROJECT_PERMISSIONS,
    RESOURCES,
    ROLES,
    SYSTEM_GRANTS,
    permissions_of,
    scope_for,
)
from tests.support.clients import User

LADDER = ["viewer", "member", "operator", "admin", "owner"]


def test_each_role_grants_what_the_one_below_does_and_more() -> None:
    for lower, higher in itertools.pairwise(LADDER):
        below = ROLES[lower].permissions | ROLES[lower].owned
        above = ROLES[higher].permissions | ROLES[higher].owned
        assert below <= above, (lower, higher)
        assert ROLES[lower].permissions < ROLES[higher].permissions, (lower, higher)


def test_the_roles_say_what_the_contract_says() -> None:
    viewer, member, operator, admin, owner = (ROLES[name] for name in LADDER)
    assert all(p.endswith(":read") for p in viewer.permissions)
    assert {"task:create", "workflow:run", "schedule:create"} <= member.permissions
    assert {"task:cancel", "workflow:update", "schedule:delete"} <= member.owned
    assert "task:cancel" not in member.permissions
    assert {"task:cancel", "task:pause", "execution:replay", "approval:decide"} <= (
        operator.permissions
    )
    assert "workflow:delete" in operator.owned
    assert {
        "destination:create",
        "webhook_source:update",
        "role_binding:create",
        "workflow:delete",
    } <= admin.permissions
    assert not admin.owned
    assert owner.permissions - admin.permissions == {"project:disable", "project:enable"}
    # Project roles grant nothing instance-wide; the system administrator grants everything.
    assert all(not role.permissions & INSTANCE_PERMISSIONS for role in ROLES.values())
    assert SYSTEM_GRANTS["admin"].permissions == PROJECT_PERMISSIONS | INSTANCE_PERMISSIONS
    assert "user:read" in SYSTEM_GRANTS["viewer"].permissions
    assert "user:create" not in SYSTEM_GRANTS["viewer"].permissions


def test_every_permission_of_every_resource_is_granted_by_some_role() -> None:
    resources = {
        "project",
        "task",
        "run",
        "job",
        "workflow",
        "execution",
        "schedule",
        "destination",
        "subscription",
        "webhook_source",
        "approval",
        "event",
        "audit",
        "role_binding",
        "access_rule",
        "group",
        "user",
    }
    assert set(RESOURCES) == resources
    granted: set[str] = set()
    for name in ROLES:
        anything, owned = permissions_of([name])
        granted |= anything | owned
    assert granted == PROJECT_PERMISSIONS
    assert scope_for("task:create") == "tasks:write"
    assert scope_for("webhook_source:read") == "webhooks:read"
    assert scope_for("run:create") == "tasks:write"


async def test_the_roles_endpoint_lists_the_table(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.get("/api/v1/roles", headers=admin.headers)
    assert response.status_code == 200
    roles = {role["name"]: role for role in response.json()["results"]}
    assert list(roles) == ["owner", "admin", "operator", "member", "viewer"]
    assert roles["viewer"]["permissions"] == sorted(ROLES["viewer"].permissions)
    assert "task:cancel" in roles["member"]["owned_permissions"]
    assert roles["owner"]["system_permissions"] is None
    assert "group:create" in roles["admin"]["system_permissions"]
    assert (await client.get("/api/v1/roles")).status_code == 401
