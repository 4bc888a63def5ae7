"""The audit log: every identity mutation and sign-in, traceable to its request."""

from __future__ import annotations

from typing import Any

import httpx

from tests.identity.api import audit_records, create_key
from tests.support.clients import ADMIN_PASSWORD, User, create_user


async def _one(records: list[dict[str, Any]], response: httpx.Response) -> dict[str, Any]:
    trace_id = response.headers["x-trace-id"]
    matching = [r for r in records if r["trace_id"] == trace_id]
    assert len(matching) == 1, (trace_id, response.request.url, matching)
    return matching[0]


async def test_every_identity_mutation_is_audited_with_its_trace(
    client: httpx.AsyncClient, admin: User
) -> None:
    secrets: list[str] = [ADMIN_PASSWORD, admin.token, admin.refresh]
    expected: list[tuple[httpx.Response, str, str, str | None]] = []

    def expect(response: httpx.Response, action: str, outcome: str, actor: str | None) -> None:
        assert response.status_code < 500, response.text
        expected.append((response, action, outcome, actor))

    login = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    expect(login, "auth.login", "success", "admin")
    secrets += [login.json()["access"], login.json()["refresh"]]
    bad = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "wrong-password-123"}
    )
    expect(bad, "auth.login", "failure", "admin")
    secrets.append("wrong-password-123")

    created = await client.post(
        "/api/v1/users",
        json={"username": "kim", "password": "kim-password-1"},
        headers=admin.headers,
    )
    expect(created, "user.create", "success", "admin")
    secrets.append("kim-password-1")
    path = created.headers["location"]
    expect(
        await client.patch(path, json={"timezone": "Asia/Tokyo"}, headers=admin.headers),
        "user.update",
        "success",
        "admin",
    )
    expect(
        await client.post(f"{path}/disable", headers=admin.headers),
        "user.disable",
        "success",
        "admin",
    )
    expect(
        await client.post(f"{path}/enable", headers=admin.headers),
        "user.enable",
        "success",
        "admin",
    )
    expect(
        await client.post(f"{path}/revoke-sessions", headers=admin.headers),
        "user.revoke_sessions",
        "success",
        "admin",
    )
    reset = await client.post(
        f"{path}/reset-password", json={"password": "kim-password-2"}, headers=admin.headers
    )
    expect(reset, "user.reset_password", "success", "admin")
    secrets.append("kim-password-2")

    key = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=admin.headers)
    expect(key, "api_key.create", "success", "admin")
    secrets.append(key.json()["key"])
    rotated = await client.post(
        f"/api/v1/api-keys/{key.json()['id']}/rotate", headers=admin.headers
    )
    expect(rotated, "api_key.rotate", "success", "admin")
    secrets.append(rotated.json()["key"])
    expect(
        await client.delete(f"/api/v1/api-keys/{key.json()['id']}", headers=admin.headers),
        "api_key.revoke",
        "success",
        "admin",
    )

    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh": admin.refresh})
    expect(refreshed, "auth.refresh", "success", "admin")
    secrets.append(refreshed.json()["refresh"])
    reuse = await client.post("/api/v1/auth/refresh", json={"refresh": admin.refresh})
    assert reuse.status_code == 401
    expect(reuse, "auth.refresh_reuse", "failure", None)
    session = login.json()
    logout = await client.post(
        "/api/v1/auth/logout",
        json={"refresh": session["refresh"]},
        headers={"Authorization": f"Bearer {session['access']}"},
    )
    expect(logout, "auth.logout", "success", "admin")

    records = await audit_records(client, admin)
    for response, action, outcome, actor in expected:
        record = await _one(records, response)
        assert (record["action"], record["outcome"], record["actor"]) == (action, outcome, actor)
        assert record["ip"] == "127.0.0.1"
        assert record["created_at"].endswith("Z")
    dump = str(records)
    leaked = [secret for secret in secrets if secret in dump]
    assert leaked == []


async def test_a_refused_request_leaves_only_its_failure(
    client: httpx.AsyncClient, admin: User
) -> None:
    await create_user(client, admin, "lee")
    clash = await client.post(
        "/api/v1/users",
        json={"username": "lee", "password": "lee-password-2"},
        headers=admin.headers,
    )
    assert clash.status_code == 409
    records = await audit_records(client, admin)
    assert [r for r in records if r["trace_id"] == clash.headers["x-trace-id"]] == []


async def test_filters_and_pages(client: httpx.AsyncClient, admin: User) -> None:
    mia = await create_user(client, admin, "mia")
    for i in range(3):
        await create_key(client, mia.headers, name=f"k{i}")
    await client.post(
        "/api/v1/auth/login", json={"username": "mia", "password": "not-her-password"}
    )

    by_action = await audit_records(client, admin, action="api_key.create")
    assert [r["actor"] for r in by_action] == ["mia"] * 3
    by_actor = await audit_records(client, admin, actor_id=str(mia.id))
    assert {r["action"] for r in by_actor} == {"auth.login", "api_key.create"}
    failures = await audit_records(client, admin, outcome="failure")
    assert [(r["action"], r["actor"], r["actor_id"]) for r in failures] == [
        ("auth.login", "mia", None)
    ]
    by_resource = await audit_records(
        client, admin, resource_type="user", resource_id=str(mia.id), action="user.create"
    )
    assert len(by_resource) == 1
    assert by_resource[0]["detail"] == {"username": "mia", "is_admin": False}

    everything = await audit_records(client, admin)
    middle = everything[len(everything) // 2]["created_at"]
    before = await audit_records(client, admin, until=middle)
    since = await audit_records(client, admin, since=middle)
    assert before + since == everything

    first = await client.get("/api/v1/audit?limit=2&count=true", headers=admin.headers)
    page = first.json()
    assert len(page["results"]) == 2
    assert page["count"] == len(everything)
    newest_first = [r["id"] for r in reversed(everything)]
    assert [r["id"] for r in page["results"]] == newest_first[:2]
    second = (await client.get(page["next"], headers=admin.headers)).json()
    assert [r["id"] for r in second["results"]] == newest_first[2:4]


async def test_administrators_read_the_log_and_project_owners_their_project(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await create_user(client, admin, "ned")
    mine = await create_key(client, user.headers, name="ned's")
    response = await client.get("/api/v1/audit", headers=user.headers)
    assert response.status_code == 200, response.text
    # Ned owns his default project: he reads its records, not the instance's.
    records = response.json()["results"]
    assert [r["resource_id"] for r in records if r["action"] == "api_key.create"] == [mine["id"]]
    me = await client.get("/api/v1/users/me", headers=user.headers)
    assert {r["project_id"] for r in records} == {me.json()["default_project_id"]}
    scoped = await create_key(client, admin.headers, scopes=["tasks:read"])
    response = await client.get("/api/v1/audit", headers={"X-API-Key": scoped["key"]})
    assert response.status_code == 403
    audit_key = await create_key(client, admin.headers, scopes=["audit:read"])
    response = await client.get("/api/v1/audit", headers={"X-API-Key": audit_key["key"]})
    assert response.status_code == 200
