"""Rate limits: contract headers, 429s, per-principal and per-IP budgets, a sliding window,
and one budget shared by every replica through Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from taskgate.http.ratelimit import Budget, MemoryStore, RedisStore, WindowStore
from tests.conftest import AppFactory
from tests.identity.api import first_admin
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login
from tests.support.databases import in_ci

REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The test Redis database, emptied; skipped without Redis unless CI=true."""
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.flushdb()
    except (RedisError, OSError):
        await redis.aclose()
        if in_ci():
            pytest.fail(f"Redis is unreachable at {REDIS_URL} and CI=true", pytrace=False)
        pytest.skip("Redis is not reachable (set CI=true to make this fatal)")
    yield REDIS_URL
    await redis.flushdb()
    await redis.aclose()


def _budget(response: httpx.Response) -> tuple[int, int, int]:
    headers = response.headers
    return (
        int(headers["x-ratelimit-limit"]),
        int(headers["x-ratelimit-remaining"]),
        int(headers["x-ratelimit-reset"]),
    )


async def test_every_response_carries_the_budget(client: httpx.AsyncClient, admin: User) -> None:
    first = await client.get("/api/v1/users/me", headers=admin.headers)
    second = await client.get("/api/v1/users/me", headers=admin.headers)
    limit, remaining, reset = _budget(first)
    assert limit == 10000
    assert _budget(second)[1] == remaining - 1
    assert time.time() <= reset <= time.time() + 61
    not_found = await client.get(
        "/api/v1/users/0190f3d5-0000-7000-8000-00000000000a", headers=admin.headers
    )
    assert not_found.status_code == 404
    assert _budget(not_found)[1] == remaining - 2
    anonymous = await client.get("/api/v1/users/me")
    assert anonymous.status_code == 401
    assert "x-ratelimit-remaining" in anonymous.headers
    assert "x-ratelimit-limit" not in (await client.get("/health")).headers


async def test_a_spent_budget_is_429_with_retry_after(app_factory: AppFactory) -> None:
    async with app_factory(rate_limit={"standard": "3/minute"}) as (app, client):
        await first_admin(app)
        admin = await login(client, "admin", ADMIN_PASSWORD)  # spends 1 (GET /users/me)
        other = await create_user(client, admin, "other")  # spends 2
        last = await client.get("/api/v1/users/me", headers=admin.headers)
        assert last.status_code == 200
        assert _budget(last)[:2] == (3, 0)
        limited = await client.get("/api/v1/users/me", headers=admin.headers)
        assert limited.status_code == 429
        error = limited.json()["error"]
        assert error["code"] == "RATE_LIMITED"
        assert error["trace_id"] == limited.headers["x-trace-id"]
        assert _budget(limited)[:2] == (3, 0)
        assert 0 < int(limited.headers["retry-after"]) <= 120
        # Another principal spends its own budget.
        assert (await client.get("/api/v1/users/me", headers=other.headers)).status_code == 200


async def test_an_api_key_has_a_budget_apart_from_its_user(app_factory: AppFactory) -> None:
    async with app_factory(rate_limit={"standard": "3/minute"}) as (app, client):
        await first_admin(app)
        admin = await login(client, "admin", ADMIN_PASSWORD)  # spends 1
        created = await client.post("/api/v1/api-keys", json={"name": "k"}, headers=admin.headers)
        key = {"X-API-Key": created.json()["key"]}
        statuses = [
            (await client.get("/api/v1/users/me", headers=key)).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        assert (await client.get("/api/v1/users/me", headers=admin.headers)).status_code == 200


async def test_anonymous_callers_are_counted_per_address(app_factory: AppFactory) -> None:
    overrides = {"rate_limit": {"anonymous": "2/minute"}, "http": {"trust_forwarded_for": True}}
    async with app_factory(**overrides) as (_, client):
        first_ip = {"X-Forwarded-For": "198.51.100.7"}
        statuses = [
            (await client.get("/api/v1/users/me", headers=first_ip)).status_code for _ in range(3)
        ]
        assert statuses == [401, 401, 429]
        other_ip = {"X-Forwarded-For": "198.51.100.8"}
        assert (await client.get("/api/v1/users/me", headers=other_ip)).status_code == 401


async def _slides(store: WindowStore) -> None:
    budget = Budget.parse("10/minute", "test")
    start = 60.0 * 1_000_000  # the start of some minute
    # Ten hits at the very end of one minute...
    results = [await store.hit("k", budget, start + 59.5) for _ in range(11)]
    assert [counted for _, _, counted in results] == [True] * 10 + [False]
    # ...still count a second later, when a fixed window would have started afresh.
    assert (await store.hit("k", budget, start + 60.5))[2] is False
    # Halfway into the next minute half of them have slid out of the window.
    halfway = [(await store.hit("k", budget, start + 90.5))[2] for _ in range(6)]
    assert halfway == [True] * 5 + [False]
    # Two minutes on, nothing of the burst is left.
    later = [(await store.hit("k", budget, start + 180.0))[2] for _ in range(11)]
    assert later == [True] * 10 + [False]
    assert (await store.hit("other", budget, start + 59.5))[2] is True


async def test_the_window_slides_in_memory() -> None:
    await _slides(MemoryStore())


async def test_the_window_slides_in_redis(redis_url: str) -> None:
    store = RedisStore(redis_url)
    try:
        await _slides(store)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("text", "amount", "seconds"),
    [("120/minute", 120, 60), ("5 per second", 5, 1), ("1000/2 hours", 1000, 7200)],
)
def test_budgets_parse(text: str, amount: int, seconds: int) -> None:
    assert Budget.parse(text, "x") == Budget(amount, seconds)


def test_a_malformed_budget_is_refused() -> None:
    with pytest.raises(ValueError, match=r"rate_limit\.standard"):
        Budget.parse("lots", "rate_limit.standard")


async def test_replicas_share_one_budget_through_redis(
    app_factory: AppFactory, redis_url: str
) -> None:
    overrides = {"redis_url": redis_url, "rate_limit": {"standard": "3/minute"}}
    async with app_factory(**overrides) as (app, one), app_factory(**overrides) as (_, two):
        await first_admin(app)
        admin = await login(one, "admin", ADMIN_PASSWORD)  # spends 1, on replica one
        seen = []
        for client in (two, one, two):
            response = await client.get("/api/v1/users/me", headers=admin.headers)
            seen.append((response.status_code, response.headers["x-ratelimit-remaining"]))
        assert seen == [(200, "1"), (200, "0"), (429, "0")]


async def test_an_unreachable_redis_does_not_take_the_api_down(
    app_factory: AppFactory, admin: User
) -> None:
    async with app_factory(redis_url="redis://127.0.0.1:1/0") as (_, client):
        response = await client.get("/api/v1/users/me", headers=admin.headers)
        assert response.status_code == 200
