"""Administrators managing accounts; what disabling and resetting do to credentials."""

from __future__ import annotations

import httpx
import pytest

from tests.identity.api import bearer, create_key, login_pair, me_status
from tests.support.clients import User, create_user, login


async def test_create_answers_201_with_location_and_the_account(
    client: httpx.AsyncClient, admin: User
) -> None:
    response = await client.post(
        "/api/v1/users",
        json={"username": "dora", "email": "Dora@Example.com", "password": "dora-password"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/users/{body['id']}"
    assert {"id", "username", "email", "is_admin", "is_active", "created_at"} <= set(body)
    assert body["email"] == "dora@example.com"
    assert (body["is_admin"], body["is_active"]) == (False, True)
    assert "password" not in response.text
    assert body["created_at"].endswith("Z")
    fetched = await client.get(response.headers["location"], headers=admin.headers)
    assert fetched.json() == body


@pytest.mark.parametrize(
    "clash",
    [{"username": "dora"}, {"username": "DORA"}, {"username": "x", "email": "dora@example.com"}],
)
async def test_a_taken_username_or_email_is_409(
    client: httpx.AsyncClient, admin: User, clash: dict[str, str]
) -> None:
    first = {"username": "dora", "email": "dora@example.com", "password": "dora-password"}
    assert (await client.post("/api/v1/users", json=first, headers=admin.headers)).is_success
    second = {"password": "other-password", **clash}
    response = await client.post("/api/v1/users", json=second, headers=admin.headers)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "CONFLICT"


async def test_list_filters_and_orders(client: httpx.AsyncClient, admin: User) -> None:
    for name in ("zeta", "alpha", "alpine"):
        await create_user(client, admin, name)
    alpine = await client.get("/api/v1/users?search=alp&ordering=username", headers=admin.headers)
    assert [u["username"] for u in alpine.json()["results"]] == ["alpha", "alpine"]
    zeta_id = next(
        u["id"]
        for u in (await client.get("/api/v1/users", headers=admin.headers)).json()["results"]
        if u["username"] == "zeta"
    )
    await client.post(f"/api/v1/users/{zeta_id}/disable", headers=admin.headers)
    inactive = await client.get("/api/v1/users?is_active=false", headers=admin.headers)
    assert [u["username"] for u in inactive.json()["results"]] == ["zeta"]
    active = await client.get(
        "/api/v1/users?is_active=true&ordering=-username", headers=admin.headers
    )
    assert [u["username"] for u in active.json()["results"]] == ["alpine", "alpha", "admin"]


async def test_get_unknown_user_is_404(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.get(
        "/api/v1/users/0190f3d5-0000-7000-8000-000000000000", headers=admin.headers
    )
    assert response.status_code == 404


async def test_patch_changes_only_the_fields_sent(client: httpx.AsyncClient, admin: User) -> None:
    created = await client.post(
        "/api/v1/users",
        json={"username": "erin", "email": "erin@example.com", "password": "erin-password"},
        headers=admin.headers,
    )
    path = created.headers["location"]
    response = await client.patch(path, json={"timezone": "Europe/Berlin"}, headers=admin.headers)
    assert response.status_code == 200, response.text
    after_tz = response.json()
    assert after_tz["timezone"] == "Europe/Berlin"
    assert after_tz["email"] == "erin@example.com"
    assert after_tz["is_admin"] is False
    response = await client.patch(path, json={"is_admin": True}, headers=admin.headers)
    assert response.json() == {**after_tz, "is_admin": True}
    response = await client.patch(path, json={"email": None}, headers=admin.headers)
    assert response.json() == {**after_tz, "is_admin": True, "email": None}
    bad = await client.patch(path, json={"timezone": "Mars/Olympus"}, headers=admin.headers)
    assert bad.status_code == 400
    unknown_field = await client.patch(path, json={"password": "x" * 12}, headers=admin.headers)
    assert unknown_field.status_code == 400
    assert (await client.get(path, headers=admin.headers)).json()["timezone"] == "Europe/Berlin"


async def test_a_change_shows_in_users_me_at_once(client: httpx.AsyncClient, admin: User) -> None:
    user = await create_user(client, admin, "fred")
    assert (await client.get("/api/v1/users/me", headers=user.headers)).json()["roles"] == ["user"]
    await client.patch(f"/api/v1/users/{user.id}", json={"is_admin": True}, headers=admin.headers)
    me = (await client.get("/api/v1/users/me", headers=user.headers)).json()
    assert me["roles"] == ["admin", "user"]
    assert me["user"]["is_admin"] is True


async def test_reset_password_ends_old_sessions(client: httpx.AsyncClient, admin: User) -> None:
    user = await create_user(client, admin, "gina")
    response = await client.post(
        f"/api/v1/users/{user.id}/reset-password",
        json={"password": "brand-new-password"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    assert await me_status(client, user.headers) == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh": user.refresh})
    assert refresh.status_code == 401
    old = await client.post(
        "/api/v1/auth/login", json={"username": "gina", "password": user.password}
    )
    assert old.status_code == 401
    await login(client, "gina", "brand-new-password")


async def test_revoke_sessions_ends_tokens_but_not_api_keys(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await create_user(client, admin, "hank")
    key = await create_key(client, user.headers)
    response = await client.post(f"/api/v1/users/{user.id}/revoke-sessions", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert await me_status(client, user.headers) == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh": user.refresh})
    assert refresh.status_code == 401
    assert await me_status(client, {"X-API-Key": key["key"]}) == 200
    await login(client, "hank", user.password)


async def test_disabling_shuts_every_door_and_enabling_reopens_keys(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await create_user(client, admin, "ivan")
    key = {"X-API-Key": (await create_key(client, user.headers))["key"]}
    assert await me_status(client, key) == 200
    disabled = await client.post(f"/api/v1/users/{user.id}/disable", headers=admin.headers)
    assert disabled.status_code == 200
    assert disabled.json()["is_active"] is False
    assert await me_status(client, user.headers) == 401
    assert await me_status(client, key) == 401
    refused = await client.post(
        "/api/v1/auth/login", json={"username": "ivan", "password": user.password}
    )
    assert refused.status_code == 401

    enabled = await client.post(f"/api/v1/users/{user.id}/enable", headers=admin.headers)
    assert enabled.json()["is_active"] is True
    assert await me_status(client, key) == 200
    assert await me_status(client, user.headers) == 401  # a token must be signed for anew
    pair = await login_pair(client, "ivan", user.password)
    assert await me_status(client, bearer(pair["access"])) == 200


async def test_an_admin_cannot_disable_themselves(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.post(f"/api/v1/users/{admin.id}/disable", headers=admin.headers)
    assert response.status_code == 409
    demote = await client.patch(
        f"/api/v1/users/{admin.id}", json={"is_admin": False}, headers=admin.headers
    )
    assert demote.status_code == 400


async def test_other_users_get_403_on_admin_endpoints(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await create_user(client, admin, "jane")
    target = f"/api/v1/users/{admin.id}"
    calls = [
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"username": "k", "password": "k" * 10}),
        ("GET", target, None),
        ("PATCH", target, {"timezone": "UTC"}),
        ("POST", f"{target}/disable", None),
        ("POST", f"{target}/enable", None),
        ("POST", f"{target}/revoke-sessions", None),
        ("POST", f"{target}/reset-password", {"password": "p" * 12}),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body, headers=user.headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "FORBIDDEN"
    assert await me_status(client, admin.headers) == 200
    # The audit log is not the instance's to her: only her own project's records.
    me = await client.get("/api/v1/users/me", headers=user.headers)
    audit = await client.get("/api/v1/audit", headers=user.headers)
    assert audit.status_code == 200
    projects = {record["project_id"] for record in audit.json()["results"]}
    assert projects <= {me.json()["default_project_id"]}


@pytest.mark.parametrize("zone", ["America", "localtime", "Mars/Base", " UTC"])
async def test_a_timezone_that_is_not_a_zone_is_400(
    client: httpx.AsyncClient, admin: User, zone: str
) -> None:
    # "America" is a directory of the tz database: zoneinfo raised IsADirectoryError.
    created = await client.post(
        "/api/v1/users",
        json={"username": "tz", "password": "tz-password", "timezone": zone},
        headers=admin.headers,
    )
    patched = await client.patch(
        f"/api/v1/users/{admin.id}", json={"timezone": zone}, headers=admin.headers
    )
    for response in (created, patched):
        assert response.status_code == 400, response.text
        details = response.json()["error"]["details"]
        assert [d["field"] for d in details] == ["timezone"]
    assert (await client.get("/api/v1/users/me", headers=admin.headers)).json()["user"][
        "timezone"
    ] == "UTC"
