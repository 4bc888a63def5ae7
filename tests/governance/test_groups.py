"""Groups: instance administrators manage them and their members (audited with actor and
time); a group's role bindings grant its members, until the group is disabled."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.governance.support import assert_error, bind, in_project, project
from tests.identity.api import audit_records
from tests.support.clients import User, create_user


async def _group(client: httpx.AsyncClient, admin: User, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/groups", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    group: dict[str, Any] = response.json()
    return group


async def _add(client: httpx.AsyncClient, admin: User, group: str, user: User) -> httpx.Response:
    return await client.post(
        f"/api/v1/groups/{group}/members", json={"user_id": str(user.id)}, headers=admin.headers
    )


async def test_administrators_manage_groups(client: httpx.AsyncClient, admin: User) -> None:
    alice = await create_user(client, admin, "alice")
    refused = await client.post("/api/v1/groups", json={"name": "Ops"}, headers=alice.headers)
    assert_error(refused, 403, "FORBIDDEN", "group:create")

    ops = await _group(client, admin, name="Ops Team", description="on call")
    assert (ops["slug"], ops["is_active"], ops["managed_by"]) == ("ops-team", True, "local")
    assert (await _group(client, admin, name="Ops Team"))["slug"] == "ops-team-2"
    taken = await client.post(
        "/api/v1/groups", json={"name": "x", "slug": "ops-team"}, headers=admin.headers
    )
    assert_error(taken, 409, "CONFLICT")
    bad = await client.post(
        "/api/v1/groups", json={"name": "x", "slug": "Bad Slug"}, headers=admin.headers
    )
    assert_error(bad, 400, "VALIDATION_ERROR", "slug")

    renamed = await client.patch(
        f"/api/v1/groups/{ops['id']}", json={"name": "Operations"}, headers=admin.headers
    )
    assert (renamed.json()["name"], renamed.json()["slug"]) == ("Operations", "ops-team")
    disabled = await client.post(f"/api/v1/groups/{ops['id']}/disable", headers=admin.headers)
    assert disabled.json()["is_active"] is False
    listed = await client.get(
        "/api/v1/groups", params={"is_active": "false"}, headers=admin.headers
    )
    assert [g["id"] for g in listed.json()["results"]] == [ops["id"]]
    enabled = await client.post(f"/api/v1/groups/{ops['id']}/enable", headers=admin.headers)
    assert enabled.json()["is_active"] is True
    disable = await client.post(f"/api/v1/groups/{ops['id']}/disable", headers=alice.headers)
    assert_error(disable, 403, "FORBIDDEN", "group:disable")
    rename = await client.patch(
        f"/api/v1/groups/{ops['id']}", json={"name": "x"}, headers=alice.headers
    )
    assert_error(rename, 403, "FORBIDDEN", "group:update")
    missing = await client.get(f"/api/v1/groups/{uuid.uuid4()}", headers=admin.headers)
    assert_error(missing, 404, "NOT_FOUND")


async def test_memberships_are_audited_with_actor_and_time(
    client: httpx.AsyncClient, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    bob = await create_user(client, admin, "bob")
    ops = await _group(client, admin, name="Ops")
    added = await _add(client, admin, ops["id"], alice)
    assert added.status_code == 201, added.text
    member = added.json()
    assert (member["user_id"], member["username"], member["added_by"]) == (
        str(alice.id),
        "alice",
        str(admin.id),
    )
    assert member["created_at"]
    assert_error(await _add(client, admin, ops["id"], alice), 409, "CONFLICT")
    unknown = await client.post(
        f"/api/v1/groups/{ops['id']}/members",
        json={"user_id": str(uuid.uuid4())},
        headers=admin.headers,
    )
    assert_error(unknown, 400, "VALIDATION_ERROR", "user_id")
    assert_error(await _add(client, alice, ops["id"], bob), 403, "FORBIDDEN", "group:update")

    # Members see their groups and each other; others see neither.
    mine = await client.get("/api/v1/groups", headers=alice.headers)
    assert [g["slug"] for g in mine.json()["results"]] == ["ops"]
    members = await client.get(f"/api/v1/groups/{ops['id']}/members", headers=alice.headers)
    assert [m["username"] for m in members.json()["results"]] == ["alice"]
    assert (await client.get("/api/v1/groups", headers=bob.headers)).json()["results"] == []
    hidden = await client.get(f"/api/v1/groups/{ops['id']}/members", headers=bob.headers)
    assert_error(hidden, 404, "NOT_FOUND")

    removed = await client.delete(
        f"/api/v1/groups/{ops['id']}/members/{alice.id}", headers=admin.headers
    )
    assert removed.status_code == 204
    again = await client.delete(
        f"/api/v1/groups/{ops['id']}/members/{alice.id}", headers=admin.headers
    )
    assert_error(again, 404, "NOT_FOUND")

    records = [
        r
        for r in await audit_records(client, admin, resource_id=ops["id"])
        if r["action"].startswith("group.")
    ]
    changes = [(r["action"], r["actor"], r["detail"].get("user_id")) for r in records]
    assert changes == [
        ("group.create", "admin", None),
        ("group.member_add", "admin", str(alice.id)),
        ("group.member_remove", "admin", str(alice.id)),
    ]
    assert all(r["created_at"] and r["subject"]["scope"] == "system" for r in records)
    assert records[1]["subject"]["role_names"] == ["system:admin"]


async def test_a_groups_binding_grants_its_members_while_it_is_active(
    client: httpx.AsyncClient, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    bob = await create_user(client, admin, "bob")
    project_id = await project(client, alice, "Studio")
    ops = await _group(client, admin, name="Ops")
    made = await bind(client, alice, ops["id"], "operator", project_id, subject_type="group")
    assert made.status_code == 201, made.text
    tasks = "/api/v1/tasks"
    assert (await client.get(tasks, headers=in_project(bob, project_id))).status_code == 404

    assert (await _add(client, admin, ops["id"], bob)).status_code == 201
    assert (await client.get(tasks, headers=in_project(bob, project_id))).status_code == 200
    me = (await client.get("/api/v1/users/me", headers=in_project(bob, project_id))).json()
    assert [g["slug"] for g in me["groups"]] == ["ops"]
    [grants] = [p for p in me["projects"] if p["project_id"] == project_id]
    assert grants["roles"] == ["operator"]
    assert "task:cancel" in grants["permissions"]

    await client.post(f"/api/v1/groups/{ops['id']}/disable", headers=admin.headers)
    assert (await client.get(tasks, headers=in_project(bob, project_id))).status_code == 404
    await client.post(f"/api/v1/groups/{ops['id']}/enable", headers=admin.headers)
    assert (await client.get(tasks, headers=in_project(bob, project_id))).status_code == 200
    await client.delete(f"/api/v1/groups/{ops['id']}/members/{bob.id}", headers=admin.headers)
    assert (await client.get(tasks, headers=in_project(bob, project_id))).status_code == 404
