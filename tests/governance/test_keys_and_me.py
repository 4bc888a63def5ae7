"""API keys restricted to a project and to scopes never exceed their user; ``/users/me``
tells each caller what it may do where."""

from __future__ import annotations

import uuid

import httpx

from tests.governance.support import TASK, assert_error, bind, in_project, project, submit
from tests.identity.api import create_key
from tests.support.clients import User, create_user


def _key(secret: str, project: str | None = None) -> dict[str, str]:
    headers = {"X-API-Key": secret}
    if project:
        headers["X-Tenant-ID"] = project
    return headers


async def _task_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    response = await client.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 200, response.text
    return [t["task_id"] for t in response.json()["results"]]


async def test_a_key_restricted_to_a_project_works_there_only(
    client: httpx.AsyncClient, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    studio = await project(client, alice, "Studio")
    key = await create_key(client, alice.headers, project_id=studio)
    assert key["project_id"] == studio
    secret = key["key"]

    task_id = await submit(client, _key(secret))
    assert await _task_ids(client, in_project(alice, studio)) == [task_id]
    me = (await client.get("/api/v1/users/me", headers=_key(secret))).json()
    assert (me["project_id"], me["key_project_id"]) == (studio, studio)
    assert [p["project_id"] for p in me["projects"]] == [studio]

    default = me["default_project_id"]
    for reference in (default, f"default-{alice.username}"):
        elsewhere = await client.get("/api/v1/tasks", headers=_key(secret, reference))
        assert_error(elsewhere, 404, "NOT_FOUND", "No such project")
    listed = await client.get("/api/v1/projects", headers=_key(secret))
    assert [p["id"] for p in listed.json()["results"]] == [studio]
    made = await client.post("/api/v1/projects", json={"name": "More"}, headers=_key(secret))
    assert_error(made, 403, "FORBIDDEN")

    # It mints keys of its own project only.
    minted = await client.post("/api/v1/api-keys", json={"name": "k"}, headers=_key(secret))
    assert minted.json()["project_id"] == studio
    wider = await client.post(
        "/api/v1/api-keys", json={"name": "k", "project_id": default}, headers=_key(secret)
    )
    assert_error(wider, 400, "VALIDATION_ERROR", "project_id")


async def test_a_key_never_exceeds_its_user(client: httpx.AsyncClient, admin: User) -> None:
    alice = await create_user(client, admin, "alice")
    bob = await create_user(client, admin, "bob")
    studio = await project(client, bob, "Studio")
    hidden = await client.post(
        "/api/v1/api-keys", json={"name": "k", "project_id": studio}, headers=alice.headers
    )
    assert_error(hidden, 400, "VALIDATION_ERROR", "project_id")
    unknown = await client.post(
        "/api/v1/api-keys",
        json={"name": "k", "project_id": str(uuid.uuid4())},
        headers=alice.headers,
    )
    assert_error(unknown, 400, "VALIDATION_ERROR", "project_id")

    made = await bind(client, bob, alice.id, "member", studio)
    assert made.status_code == 201
    secret = (await create_key(client, alice.headers, project_id=studio))["key"]
    bobs = await submit(client, in_project(bob, studio))
    refused = await client.post(f"/api/v1/tasks/{bobs}/cancel", headers=_key(secret))
    assert_error(refused, 403, "FORBIDDEN", "task:cancel")
    assert (await client.post("/api/v1/tasks", json=TASK, headers=_key(secret))).status_code == 201

    removed = await client.delete(f"/api/v1/role-bindings/{made.json()['id']}", headers=bob.headers)
    assert removed.status_code == 204
    gone = await client.post("/api/v1/tasks", json=TASK, headers=_key(secret))
    assert_error(gone, 404, "NOT_FOUND", "No such project")


async def test_a_keys_scopes_bound_what_its_roles_allow(
    client: httpx.AsyncClient, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    task_id = await submit(client, alice.headers)
    secret = (await create_key(client, alice.headers, scopes=["tasks:read"]))["key"]
    assert (await client.get(f"/api/v1/tasks/{task_id}", headers=_key(secret))).status_code == 200
    refused = await client.post("/api/v1/tasks", json=TASK, headers=_key(secret))
    assert_error(refused, 403, "FORBIDDEN", "tasks:write")
    cancel = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=_key(secret))
    assert_error(cancel, 403, "FORBIDDEN", "tasks:write")
    me = (await client.get("/api/v1/users/me", headers=_key(secret))).json()
    [own] = me["projects"]
    assert own["roles"] == ["owner"]
    # Runs and jobs are read with the tasks scope.
    assert own["permissions"] == ["job:read", "run:read", "task:read"]


async def test_me_tells_roles_and_permissions_per_project(
    client: httpx.AsyncClient, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    bob = await create_user(client, admin, "bob")
    studio = await project(client, bob, "Studio")
    assert (await bind(client, bob, alice.id, "member", studio)).status_code == 201

    me = (await client.get("/api/v1/users/me", headers=alice.headers)).json()
    by_project = {p["project_id"]: p for p in me["projects"]}
    assert set(by_project) == {me["default_project_id"], studio}
    own = by_project[me["default_project_id"]]
    assert own["roles"] == ["owner"]
    assert "project:disable" in own["permissions"]
    member = by_project[studio]
    assert member["roles"] == ["member"]
    assert {"task:read", "task:create"} <= set(member["permissions"])
    assert "task:cancel" in member["owned_permissions"]
    assert "task:cancel" not in member["permissions"]
    assert (me["groups"], me["system"]) == ([], {"roles": [], "permissions": []})

    boss = (await client.get("/api/v1/users/me", headers=admin.headers)).json()
    assert boss["system"]["roles"] == ["admin"]
    assert {"group:create", "access_rule:delete", "task:cancel"} <= set(
        boss["system"]["permissions"]
    )


async def test_an_unknown_project_is_a_404_envelope(client: httpx.AsyncClient, admin: User) -> None:
    for reference in ("no-such-project", str(uuid.uuid4())):
        for method, path in (("GET", "/api/v1/users/me"), ("POST", "/api/v1/tasks")):
            response = await client.request(
                method,
                path,
                json=TASK if method == "POST" else None,
                headers={**admin.headers, "X-Tenant-ID": reference},
            )
            assert_error(response, 404, "NOT_FOUND", "No such project")
            assert response.json()["error"]["trace_id"] == response.headers["x-trace-id"]


async def test_an_administrators_key_restricted_to_a_project_administers_nothing_else(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await project(client, admin, "Studio")
    secret = (await create_key(client, admin.headers, project_id=studio))["key"]
    assert (await client.get("/api/v1/tasks", headers=_key(secret))).status_code == 200
    for method, path, body in (
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/groups", {"name": "ops"}),
        ("GET", "/api/v1/access-rules", None),
    ):
        response = await client.request(method, path, json=body, headers=_key(secret))
        assert_error(response, 403, "FORBIDDEN", "instance-wide")
    # The audit log through it is its project's, as for the project's own admins.
    audit = await client.get("/api/v1/audit", headers=_key(secret))
    assert audit.status_code == 200, audit.text
    assert audit.json()["results"]
    assert {record["project_id"] for record in audit.json()["results"]} == {studio}
