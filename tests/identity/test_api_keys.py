"""API keys: shown once, listed, rotated, revoked, expired, limited by scopes."""

from __future__ import annotations

from datetime import timedelta

import httpx

from taskgate.clock import isoformat, utcnow
from tests.conftest import AppFactory
from tests.identity.api import bearer, create_key, first_admin, me_status
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login
from tests.support.waiting import eventually


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def test_the_secret_is_shown_once(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.post("/api/v1/api-keys", json={"name": "laptop"}, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["key"].startswith("tg_")
    assert response.headers["location"] == f"/api/v1/api-keys/{created['id']}"
    assert {"id", "name", "prefix", "key", "scopes", "expires_at", "created_at"} <= set(created)
    assert created["scopes"] == ["*"]
    fetched = await client.get(response.headers["location"], headers=admin.headers)
    assert fetched.status_code == 200
    assert "key" not in fetched.json()
    listed = await client.get("/api/v1/api-keys", headers=admin.headers)
    assert all("key" not in item for item in listed.json()["results"])
    assert created["key"] not in listed.text + fetched.text


async def test_a_key_authenticates_by_header_or_bearer(
    client: httpx.AsyncClient, admin: User
) -> None:
    created = await create_key(client, admin.headers, scopes=["tasks:read", "runs:*"])
    for headers in (key_header(created["key"]), bearer(created["key"])):
        response = await client.get("/api/v1/users/me", headers=headers)
        assert response.status_code == 200, response.text
        me = response.json()
        assert me["auth"] == "api_key"
        assert me["api_key_id"] == created["id"]
        assert me["scopes"] == ["runs:*", "tasks:read"]
        assert me["user"]["username"] == "admin"
        assert me["roles"] == ["admin", "user"]


async def test_a_wrong_api_key_is_called_an_invalid_api_key(client: httpx.AsyncClient) -> None:
    for wrong in ("not-a-key", "tg_0123456789ab_" + "x" * 43, "eyJhbGciOiJIUzI1NiJ9.e30.x"):
        response = await client.get("/api/v1/users/me", headers=key_header(wrong))
        assert response.status_code == 401, wrong
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["message"] == "Invalid or expired API key.", wrong
    token = await client.get("/api/v1/users/me", headers=bearer("not-a-token"))
    assert token.status_code == 401
    assert token.json()["error"]["message"] == "Invalid access token."


async def test_keys_are_listed_page_by_page(client: httpx.AsyncClient, admin: User) -> None:
    made = [(await create_key(client, admin.headers, name=f"k{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    url: str | None = "/api/v1/api-keys?limit=2&count=true"
    while url:
        page = (await client.get(url, headers=admin.headers)).json()
        assert len(page["results"]) <= 2
        assert page["count"] == 5
        seen.extend(item["id"] for item in page["results"])
        url = page["next"]
    assert seen == list(reversed(made))


async def test_rotation_replaces_the_secret_at_once(client: httpx.AsyncClient, admin: User) -> None:
    created = await create_key(client, admin.headers)
    assert await me_status(client, key_header(created["key"])) == 200
    response = await client.post(f"/api/v1/api-keys/{created['id']}/rotate", headers=admin.headers)
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["id"] == created["id"]
    assert rotated["key"] != created["key"]
    assert await me_status(client, key_header(created["key"])) == 401
    assert await me_status(client, key_header(rotated["key"])) == 200


async def test_revocation_takes_effect_at_once(client: httpx.AsyncClient, admin: User) -> None:
    created = await create_key(client, admin.headers)
    assert await me_status(client, key_header(created["key"])) == 200
    response = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin.headers)
    assert response.status_code == 204
    assert await me_status(client, key_header(created["key"])) == 401
    fetched = (await client.get(f"/api/v1/api-keys/{created['id']}", headers=admin.headers)).json()
    assert fetched["revoked_at"] is not None
    rotate = await client.post(f"/api/v1/api-keys/{created['id']}/rotate", headers=admin.headers)
    assert rotate.status_code == 404


async def test_a_key_stops_working_when_it_expires(client: httpx.AsyncClient, admin: User) -> None:
    soon = isoformat(utcnow() + timedelta(seconds=2))
    created = await create_key(client, admin.headers, expires_at=soon)
    assert await me_status(client, key_header(created["key"])) == 200

    async def expired() -> bool:
        return await me_status(client, key_header(created["key"])) == 401

    await eventually(expired, timeout=10)
    past = isoformat(utcnow() - timedelta(seconds=1))
    response = await client.post(
        "/api/v1/api-keys", json={"name": "late", "expires_at": past}, headers=admin.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "expires_at"


async def test_a_limited_key_cannot_reach_beyond_its_scopes(
    client: httpx.AsyncClient, admin: User
) -> None:
    read_only = await create_key(client, admin.headers, scopes=["tasks:read"])
    headers = key_header(read_only["key"])
    response = await client.post("/api/v1/api-keys", json={"name": "x"}, headers=headers)
    assert response.status_code == 403
    assert (await client.get("/api/v1/api-keys", headers=headers)).status_code == 403
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 403

    minting = await create_key(client, admin.headers, scopes=["tasks:read", "api-keys:write"])
    headers = key_header(minting["key"])
    broader = await client.post("/api/v1/api-keys", json={"name": "x"}, headers=headers)
    assert broader.status_code == 400
    assert broader.json()["error"]["details"][0]["field"] == "scopes"
    narrower = await client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["tasks:read"]}, headers=headers
    )
    assert narrower.status_code == 201, narrower.text
    # Rotating a broader key would hand its secret to the narrower one.
    full = await create_key(client, admin.headers)
    rotate = await client.post(f"/api/v1/api-keys/{full['id']}/rotate", headers=headers)
    assert rotate.status_code == 400
    assert await me_status(client, key_header(full["key"])) == 200


async def test_unknown_scopes_are_refused(client: httpx.AsyncClient, admin: User) -> None:
    response = await client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["tasks:delete"]}, headers=admin.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "scopes.0"


async def test_another_users_key_is_not_found(client: httpx.AsyncClient, admin: User) -> None:
    mallory = await create_user(client, admin, "mallory")
    created = await create_key(client, admin.headers)
    path = f"/api/v1/api-keys/{created['id']}"
    assert (await client.get(path, headers=mallory.headers)).status_code == 404
    assert (await client.delete(path, headers=mallory.headers)).status_code == 404
    assert (await client.post(f"{path}/rotate", headers=mallory.headers)).status_code == 404
    listed = (await client.get("/api/v1/api-keys", headers=mallory.headers)).json()
    assert listed["results"] == []
    assert await me_status(client, key_header(created["key"])) == 200


async def test_last_use_is_recorded_and_survives_a_restart(app_factory: AppFactory) -> None:
    async with app_factory() as (app, client):
        await first_admin(app)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        created = await create_key(client, admin.headers)
        assert created["last_used_at"] is None
        assert await me_status(client, key_header(created["key"])) == 200
    async with app_factory() as (app, client):
        admin = await login(client, "admin", ADMIN_PASSWORD)
        fetched = await client.get(f"/api/v1/api-keys/{created['id']}", headers=admin.headers)
        assert fetched.json()["last_used_at"] is not None
