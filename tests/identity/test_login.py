"""Signing in: username or email, the compat endpoint, throttling and lockout."""

from __future__ import annotations

import httpx

from tests.conftest import AppFactory
from tests.identity.api import bearer, first_admin, login_pair, me_status
from tests.support.clients import ADMIN_PASSWORD, User, login
from tests.support.waiting import eventually


async def _make_user(
    client: httpx.AsyncClient, admin: User, username: str, email: str | None = None
) -> str:
    password = f"pw-{username}-secret"
    body = {"username": username, "password": password}
    if email:
        body["email"] = email
    response = await client.post("/api/v1/users", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return password


async def test_login_by_username_and_by_email(client: httpx.AsyncClient, admin: User) -> None:
    password = await _make_user(client, admin, "carol", "Carol@Example.com")
    by_name = await login_pair(client, "carol", password)
    assert by_name["token_type"] == "Bearer"
    assert by_name["expires_in"] == 900
    assert by_name["access"]
    assert by_name["refresh"]
    response = await client.post(
        "/api/v1/auth/login", json={"email": "carol@example.com", "password": password}
    )
    assert response.status_code == 200, response.text
    me = await client.get("/api/v1/users/me", headers=bearer(response.json()["access"]))
    assert me.json()["user"]["username"] == "carol"
    assert me.json()["user"]["email"] == "carol@example.com"
    assert me.json()["auth"] == "token"


async def test_token_endpoint_takes_the_compat_body(client: httpx.AsyncClient, admin: User) -> None:
    pair = await login_pair(client, "admin", ADMIN_PASSWORD, path="/api/v1/auth/token")
    assert set(pair) == {"access", "refresh", "token_type", "expires_in"}
    assert await me_status(client, bearer(pair["access"])) == 200


async def test_wrong_password_and_unknown_user_look_the_same(
    client: httpx.AsyncClient, admin: User
) -> None:
    wrong = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "not-the-password"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"username": "nobody", "password": "not-the-password"}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


async def test_repeated_failures_lock_the_account_until_the_lockout_passes(
    app_factory: AppFactory,
) -> None:
    async with app_factory(auth={"login_max_failures": 3, "login_lockout_seconds": 1}) as (
        app,
        client,
    ):
        await first_admin(app)
        for _ in range(3):
            response = await client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": "bad-password"}
            )
            assert response.status_code == 401
        locked = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert locked.status_code == 401
        assert "locked" in locked.json()["error"]["message"]

        async def unlocked() -> bool:
            response = await client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            )
            return response.status_code == 200

        await eventually(unlocked, timeout=15)
        # A success clears the count: one more mistake does not lock again.
        response = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "bad-password"}
        )
        assert "locked" not in response.json()["error"]["message"]
        await login(client, "admin", ADMIN_PASSWORD)


async def test_attempts_per_ip_and_username_are_limited(app_factory: AppFactory) -> None:
    async with app_factory(rate_limit={"login": "3/minute"}) as (app, client):
        await first_admin(app)
        for _ in range(3):
            response = await client.post(
                "/api/v1/auth/login", json={"username": "someone", "password": "whatever1"}
            )
            assert response.status_code == 401
        limited = await client.post(
            "/api/v1/auth/login", json={"username": "someone", "password": "whatever1"}
        )
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
        assert limited.json()["error"]["trace_id"] == limited.headers["x-trace-id"]
        # A sliding window weighs the last window's hits into the next one: at most two.
        assert 0 < int(limited.headers["retry-after"]) <= 120
        # Another account from the same address has its own budget.
        await login(client, "admin", ADMIN_PASSWORD)


async def test_the_login_limiters_429_carries_the_login_budget(app_factory: AppFactory) -> None:
    budgets = {"login": "3/minute", "anonymous": "50/minute"}
    async with app_factory(rate_limit=budgets) as (app, client):
        await first_admin(app)
        body = {"username": "someone", "password": "whatever1"}
        for _ in range(3):
            assert (await client.post("/api/v1/auth/login", json=body)).status_code == 401
        limited = await client.post("/api/v1/auth/login", json=body)
        assert limited.status_code == 429
        assert limited.headers.get_list("x-ratelimit-limit") == ["3"]
        assert limited.headers.get_list("x-ratelimit-remaining") == ["0"]
        assert len(limited.headers.get_list("x-ratelimit-reset")) == 1
        # Other anonymous requests still show the anonymous budget.
        other = await client.post("/api/v1/auth/refresh", json={"refresh": "nope"})
        assert other.headers.get_list("x-ratelimit-limit") == ["50"]
