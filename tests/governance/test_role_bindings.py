"""Role bindings through the API: who may make them, what they may carry, and the owners and
administrators a project and the instance always keep."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI

from taskgate.models import RoleBinding
from taskgate.models import User as UserRow
from tests.governance.support import assert_error, bind, denial, in_project, project, team
from tests.identity.api import audit_records
from tests.support.clients import User, create_user


async def _bindings(client: httpx.AsyncClient, user: User, **params: str) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/role-bindings", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["results"]
    return found


async def test_the_creator_of_a_project_is_its_owner(
    client: httpx.AsyncClient, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    project_id = await project(client, alice, "Studio")
    [owner] = await _bindings(client, alice, scope_id=project_id)
    assert {k: owner[k] for k in ("subject_type", "subject_id", "role", "scope_type")} == {
        "subject_type": "user",
        "subject_id": str(alice.id),
        "role": "owner",
        "scope_type": "project",
    }
    assert owner["scope_id"] == project_id
    # The request's project is the default scope of the list.
    assert await _bindings(client, alice, project_id=project_id) == [owner]


async def test_a_binding_to_nothing_known_names_the_field(
    client: httpx.AsyncClient, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    project_id = await project(client, alice, "Studio")
    cases = [
        ({"subject_id": str(uuid.uuid4())}, "subject_id"),
        ({"subject_type": "group", "subject_id": str(uuid.uuid4())}, "subject_id"),
        ({"role": "superuser"}, "role"),
        ({"subject_type": "robot"}, "subject_type"),
    ]
    for change, field in cases:
        body = {
            "subject_type": "user",
            "subject_id": str(admin.id),
            "role": "viewer",
            "scope_type": "project",
            "scope_id": project_id,
            **change,
        }
        response = await client.post("/api/v1/role-bindings", json=body, headers=alice.headers)
        assert_error(response, 400, "VALIDATION_ERROR")
        assert [d["field"] for d in response.json()["error"]["details"]] == [field], body
    # An unknown project is answered as one the caller may not see.
    body = {"subject_type": "user", "subject_id": str(admin.id), "role": "viewer"}
    unknown = await client.post(
        "/api/v1/role-bindings",
        json={**body, "scope_id": str(uuid.uuid4())},
        headers=alice.headers,
    )
    assert_error(unknown, 404, "NOT_FOUND", "No such project")


async def test_nobody_widens_their_own_access(client: httpx.AsyncClient, admin: User) -> None:
    studio = await team(client, admin)
    # A member may not bind anyone, itself least of all.
    for target, role in ((studio.member, "admin"), (studio.outsider, "viewer")):
        response = await bind(client, studio.member, target.id, role, studio.project_id)
        assert_error(response, 403, "FORBIDDEN", "role_binding:create")
    # A project admin may bind admins, not owners (itself neither).
    for target in (studio.admin, studio.outsider):
        response = await bind(client, studio.admin, target.id, "owner", studio.project_id)
        assert_error(response, 403, "FORBIDDEN", "project:disable")
    assert (
        await bind(client, studio.admin, studio.outsider.id, "admin", studio.project_id)
    ).status_code == 201
    # Nor may it take an owner's binding away.
    [owner] = await _bindings(client, studio.admin, scope_id=studio.project_id, role="owner")
    removed = await client.delete(
        f"/api/v1/role-bindings/{owner['id']}", headers=studio.admin.headers
    )
    assert_error(removed, 403, "FORBIDDEN")
    # A user who sees no project cannot bind in it: the project is not there for it.
    outsider = await create_user(client, admin, "eve")
    hidden = await bind(client, outsider, outsider.id, "owner", studio.project_id)
    assert_error(hidden, 404, "NOT_FOUND")
    # System scope is for instance administrators only.
    system = await bind(client, studio.owner, studio.owner.id, "admin", None)
    assert_error(system, 403, "FORBIDDEN", "role_binding:create")
    record = await denial(client, admin, studio.member, "role_binding:create")
    assert record["subject"]["role_names"] == ["member"]


async def test_a_project_keeps_an_owner(client: httpx.AsyncClient, admin: User) -> None:
    alice = await create_user(client, admin, "alice")
    bob = await create_user(client, admin, "bob")
    project_id = await project(client, alice, "Studio")
    [mine] = await _bindings(client, alice, scope_id=project_id)
    last = await client.delete(f"/api/v1/role-bindings/{mine['id']}", headers=alice.headers)
    assert_error(last, 409, "CONFLICT", "owner")

    assert (await bind(client, alice, bob.id, "owner", project_id)).status_code == 201
    leave = await client.delete(f"/api/v1/role-bindings/{mine['id']}", headers=alice.headers)
    assert leave.status_code == 204
    gone = await client.get(f"/api/v1/projects/{project_id}", headers=alice.headers)
    assert gone.status_code == 404
    assert (
        await client.get(f"/api/v1/projects/{project_id}", headers=bob.headers)
    ).status_code == 200


async def test_a_binding_is_made_once_and_audited(client: httpx.AsyncClient, admin: User) -> None:
    alice = await create_user(client, admin, "alice")
    bob = await create_user(client, admin, "bob")
    project_id = await project(client, alice, "Studio")
    made = await bind(client, alice, bob.id, "viewer", project_id)
    assert made.status_code == 201
    assert made.headers["location"] == f"/api/v1/role-bindings/{made.json()['id']}"
    again = await bind(client, alice, bob.id, "viewer", project_id)
    assert_error(again, 409, "CONFLICT")
    removed = await client.delete(
        f"/api/v1/role-bindings/{made.json()['id']}", headers=alice.headers
    )
    assert removed.status_code == 204

    records = await audit_records(client, admin, resource_type="role_binding")
    actions = [(r["action"], r["actor"], r["detail"]["role"]) for r in records]
    assert ("role_binding.create", "alice", "viewer") in actions
    assert ("role_binding.delete", "alice", "viewer") in actions
    assert all(r["subject"]["role_names"] == ["owner"] for r in records if r["actor"] == "alice")


async def test_the_instance_administrator_is_a_system_binding(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    made = await bind(client, admin, alice.id, "admin", None)
    assert made.status_code == 201, made.text
    user = await client.get(f"/api/v1/users/{alice.id}", headers=admin.headers)
    assert user.json()["is_admin"] is True
    assert (await client.get("/api/v1/users", headers=alice.headers)).status_code == 200

    demoted = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_admin": False}, headers=admin.headers
    )
    assert demoted.status_code == 200
    assert await _bindings(client, admin, scope_type="system", subject_id=str(alice.id)) == []
    refused = await client.get("/api/v1/users", headers=alice.headers)
    assert_error(refused, 403, "FORBIDDEN", "user:read")

    promoted = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_admin": True}, headers=admin.headers
    )
    assert promoted.status_code == 200
    [binding] = await _bindings(client, admin, scope_type="system", subject_id=str(alice.id))
    assert binding["role"] == "admin"

    # Bound to users only; never one's own removed; the instance keeps one.
    group = await client.post("/api/v1/groups", json={"name": "ops"}, headers=admin.headers)
    as_group = await bind(client, admin, group.json()["id"], "admin", None, subject_type="group")
    assert_error(as_group, 400, "VALIDATION_ERROR", "subject_type")
    [own] = await _bindings(client, admin, scope_type="system", subject_id=str(admin.id))
    refused_own = await client.delete(f"/api/v1/role-bindings/{own['id']}", headers=admin.headers)
    assert_error(refused_own, 409, "CONFLICT")
    async with app.state.db.transaction(write=False) as session:
        rows = (await session.execute(_admin_rows())).all()
    assert sorted(rows) == sorted([(admin.id, True), (alice.id, True)])


def _admin_rows() -> Any:
    from sqlalchemy import select

    return select(UserRow.id, UserRow.is_admin).where(
        UserRow.id.in_(
            select(RoleBinding.subject_id).where(
                RoleBinding.project_id.is_(None), RoleBinding.role == "admin"
            )
        )
    )


async def test_a_system_viewer_reads_every_project_and_changes_none(
    client: httpx.AsyncClient, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    auditor = await create_user(client, admin, "auditor")
    project_id = await project(client, alice, "Studio")
    assert (await bind(client, admin, auditor.id, "viewer", None)).status_code == 201

    assert (
        await client.get("/api/v1/tasks", headers=in_project(auditor, project_id))
    ).status_code == 200
    listed = await client.get("/api/v1/projects", headers=auditor.headers)
    assert project_id in {p["id"] for p in listed.json()["results"]}
    submit = await client.post(
        "/api/v1/tasks", json={"commands": ["true"]}, headers=in_project(auditor, project_id)
    )
    assert_error(submit, 403, "FORBIDDEN", "task:create")
    assert (await client.get("/api/v1/users", headers=auditor.headers)).status_code == 200
    create = await client.post(
        "/api/v1/users", json={"username": "x", "password": "password-123"}, headers=auditor.headers
    )
    assert_error(create, 403, "FORBIDDEN", "user:create")
