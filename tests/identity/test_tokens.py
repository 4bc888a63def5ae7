"""Access and refresh tokens: rotation, reuse detection, logout, expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import jwt
from fastapi import FastAPI

from taskgate.clock import utcnow
from taskgate.models import User as UserRow
from tests.conftest import AppFactory
from tests.identity.api import bearer, first_admin, login_pair, me_status
from tests.support.clients import ADMIN_PASSWORD, User, create_user


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh": token})


async def test_refresh_rotates_the_pair(client: httpx.AsyncClient, admin: User) -> None:
    first = await _refresh(client, admin.refresh)
    assert first.status_code == 200, first.text
    pair = first.json()
    assert pair["refresh"] != admin.refresh
    assert await me_status(client, bearer(pair["access"])) == 200
    # The old refresh token is spent; the new one works once more.
    second = await _refresh(client, pair["refresh"])
    assert second.status_code == 200, second.text


async def test_reusing_a_spent_refresh_token_revokes_its_family(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await create_user(client, admin, "reuser")
    other_session = await login_pair(client, "reuser", user.password)
    newest = (await _refresh(client, user.refresh)).json()["refresh"]

    reused = await _refresh(client, user.refresh)
    assert reused.status_code == 401
    assert reused.json()["error"]["code"] == "UNAUTHORIZED"
    # The thief and the owner are told apart by nobody: the newest token dies too.
    assert (await _refresh(client, newest)).status_code == 401
    # Another sign-in of the same user is a different family and lives on.
    assert (await _refresh(client, other_session["refresh"])).status_code == 200


async def test_concurrent_refresh_of_one_token_lets_exactly_one_through(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await create_user(client, admin, "racer")
    responses = await asyncio.gather(*(_refresh(client, user.refresh) for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 401, 401, 401, 401], [r.text for r in responses]


async def test_logout_revokes_the_family(client: httpx.AsyncClient, admin: User) -> None:
    user = await create_user(client, admin, "leaver")
    elsewhere = await login_pair(client, "leaver", user.password)
    response = await client.post(
        "/api/v1/auth/logout", json={"refresh": user.refresh}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert (await _refresh(client, user.refresh)).status_code == 401
    assert (await _refresh(client, elsewhere["refresh"])).status_code == 200


async def test_logout_without_a_token_ends_every_session(
    client: httpx.AsyncClient, admin: User
) -> None:
    user = await create_user(client, admin, "leaver2")
    elsewhere = await login_pair(client, "leaver2", user.password)
    response = await client.post("/api/v1/auth/logout", headers=user.headers)
    assert response.status_code == 200, response.text
    assert await me_status(client, user.headers) == 401
    assert await me_status(client, bearer(elsewhere["access"])) == 401
    assert (await _refresh(client, elsewhere["refresh"])).status_code == 401


async def test_expired_access_token_is_refused(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    async with app.state.db.transaction() as session:
        row = await session.get(UserRow, admin.id)
        assert row is not None
        version = row.auth_version
    ttl = app.state.tokens.ttl_seconds
    expired = app.state.tokens.issue(admin.id, version, utcnow() - timedelta(seconds=ttl + 1))
    fresh = app.state.tokens.issue(admin.id, version, utcnow())
    response = await client.get("/api/v1/users/me", headers=bearer(expired))
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]
    assert await me_status(client, bearer(fresh)) == 200


async def test_access_token_lifetime_follows_the_settings(app_factory: AppFactory) -> None:
    async with app_factory(auth={"access_token_ttl_seconds": 30}) as (app, client):
        await first_admin(app)
        pair = await login_pair(client, "admin", ADMIN_PASSWORD)
        assert pair["expires_in"] == 30


async def test_garbage_and_foreign_tokens_are_refused(
    client: httpx.AsyncClient, admin: User
) -> None:
    forged = jwt.encode(
        {"sub": str(admin.id), "ver": 0, "typ": "access", "exp": 9999999999},
        "another-secret-" + "y" * 40,
        algorithm="HS256",
    )
    for token in ("garbage", forged, admin.refresh):
        response = await client.get("/api/v1/users/me", headers=bearer(token))
        assert response.status_code == 401, token
