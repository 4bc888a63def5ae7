"""Idempotency-Key on POST: one effect per principal and key, the first answer replayed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from taskgate.app import create_app
from taskgate.clock import utcnow
from taskgate.errors import ServiceUnavailable
from taskgate.models import ApiKey, IdempotencyRecord
from taskgate.settings import Settings
from tests.support.clients import User, create_user
from tests.tasks.live_server import serve_in_thread


async def _keys(app: FastAPI, user: User) -> int:
    async with app.state.db.transaction(write=False) as session:
        count = await session.scalar(
            select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user.id)
        )
    return int(count or 0)


def _with_key(user: User, key: str, header: str = "Idempotency-Key") -> dict[str, str]:
    return {**user.headers, header: key}


async def test_a_retry_replays_the_first_answer_and_has_no_second_effect(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    headers = _with_key(admin, "create-laptop-key")
    first = await client.post("/api/v1/api-keys", json={"name": "laptop"}, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/api/v1/api-keys", json={"name": "laptop"}, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["x-trace-id"] != first.headers["x-trace-id"]
    assert "x-ratelimit-remaining" in again.headers
    listed = (await client.get("/api/v1/api-keys", headers=admin.headers)).json()
    assert [k["id"] for k in listed["results"]] == [first.json()["id"]]


async def test_the_same_key_with_another_body_is_422(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    headers = _with_key(admin, "k1")
    assert (await client.post("/api/v1/api-keys", json={"name": "a"}, headers=headers)).is_success
    other = await client.post("/api/v1/api-keys", json={"name": "b"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert other.json()["error"]["trace_id"] == other.headers["x-trace-id"]
    assert await _keys(app, admin) == 1


async def test_x_request_id_is_an_alias(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    headers = _with_key(admin, "req-7", header="X-Request-ID")
    first = await client.post("/api/v1/api-keys", json={"name": "a"}, headers=headers)
    again = await client.post("/api/v1/api-keys", json={"name": "a"}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await _keys(app, admin) == 1


async def test_keys_belong_to_their_principal(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    other = await create_user(client, admin, "other")
    body = {"name": "same"}
    mine = await client.post("/api/v1/api-keys", json=body, headers=_with_key(admin, "shared"))
    theirs = await client.post("/api/v1/api-keys", json=body, headers=_with_key(other, "shared"))
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["id"] != theirs.json()["id"]
    assert await _keys(app, admin) == 1
    assert await _keys(app, other) == 1


def _slow_route(app: FastAPI) -> tuple[asyncio.Event, asyncio.Event, list[int]]:
    entered, release = asyncio.Event(), asyncio.Event()
    runs: list[int] = []

    @app.post("/api/v1/test/slow", status_code=201)
    async def slow() -> dict[str, Any]:
        runs.append(len(runs) + 1)
        entered.set()
        await release.wait()
        return {"run": len(runs)}

    return entered, release, runs


async def test_a_retry_while_the_first_is_in_flight_is_409(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    entered, release, runs = _slow_route(app)
    headers = _with_key(admin, "slow-1")
    first = asyncio.create_task(client.post("/api/v1/test/slow", headers=headers))
    await asyncio.wait_for(entered.wait(), timeout=10)
    during = await client.post("/api/v1/test/slow", headers=headers)
    assert during.status_code == 409
    assert during.json()["error"]["code"] == "CONFLICT"
    release.set()
    done = await asyncio.wait_for(first, timeout=10)
    assert done.status_code == 201
    after = await client.post("/api/v1/test/slow", headers=headers)
    assert after.headers["idempotent-replayed"] == "true"
    assert after.json() == done.json() == {"run": 1}
    assert runs == [1]


async def test_twenty_concurrent_retries_have_one_effect(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    headers = _with_key(admin, "storm")
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/api-keys", json={"name": "storm"}, headers=headers)
            for _ in range(20)
        )
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, [r.text for r in responses]
    originals = [
        r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers
    ]
    assert len(originals) == 1
    replays = [r for r in responses if r.headers.get("idempotent-replayed") == "true"]
    assert all(r.json() == originals[0].json() for r in replays)
    assert await _keys(app, admin) == 1


async def test_concurrent_retries_through_a_real_server_never_fail(
    app: FastAPI, admin: User, settings_factory: Callable[..., Settings]
) -> None:
    # A server of its own, with its own event loop: the requests arrive as they would from
    # clients, and every write of the storm competes for the database at once.
    with serve_in_thread(create_app(settings_factory())) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for storm in range(5):
                headers = _with_key(admin, f"storm-{storm}")
                responses = await asyncio.gather(
                    *(
                        client.post("/api/v1/api-keys", json={"name": "s"}, headers=headers)
                        for _ in range(20)
                    )
                )
                statuses = [r.status_code for r in responses]
                assert set(statuses) <= {201, 409}, [r.text for r in responses]
                fresh = [r for r in responses if "idempotent-replayed" not in r.headers]
                assert len([r for r in fresh if r.status_code == 201]) == 1
    assert await _keys(app, admin) == 5


async def test_a_failed_first_attempt_is_not_replayed(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    attempts: list[int] = []

    @app.post("/api/v1/test/flaky", status_code=201)
    async def flaky() -> dict[str, int]:
        attempts.append(1)
        if len(attempts) == 1:
            raise ServiceUnavailable("try again")
        return {"attempt": len(attempts)}

    headers = _with_key(admin, "flaky-1")
    first = await client.post("/api/v1/test/flaky", headers=headers)
    assert first.status_code == 503
    second = await client.post("/api/v1/test/flaky", headers=headers)
    assert second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert second.json() == {"attempt": 2}
    third = await client.post("/api/v1/test/flaky", headers=headers)
    assert third.headers["idempotent-replayed"] == "true"
    assert len(attempts) == 2


async def test_an_expired_key_can_be_used_again(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    headers = _with_key(admin, "daily-report")
    assert (await client.post("/api/v1/api-keys", json={"name": "a"}, headers=headers)).is_success
    async with app.state.db.transaction() as session:
        await session.execute(
            update(IdempotencyRecord).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    again = await client.post("/api/v1/api-keys", json={"name": "b"}, headers=headers)
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert await _keys(app, admin) == 2


async def test_expired_records_are_purged(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    for key in ("a", "b"):
        await client.post("/api/v1/api-keys", json={"name": key}, headers=_with_key(admin, key))
    async with app.state.db.transaction() as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == "a")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert await app.state.housekeeping.purge_idempotency() == 1
    async with app.state.db.transaction(write=False) as session:
        left = (await session.scalars(select(IdempotencyRecord.key))).all()
    assert left == ["b"]


async def test_requests_without_a_key_are_not_recorded(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    for _ in range(2):
        response = await client.post("/api/v1/api-keys", json={"name": "x"}, headers=admin.headers)
        assert "idempotent-replayed" not in response.headers
    assert await _keys(app, admin) == 2
    too_long = await client.post(
        "/api/v1/api-keys", json={"name": "x"}, headers=_with_key(admin, "k" * 300)
    )
    assert too_long.status_code == 400


async def test_the_same_json_written_differently_is_the_same_request(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    headers = {**_with_key(admin, "spacing"), "Content-Type": "application/json"}
    first = await client.post(
        "/api/v1/api-keys", content=b'{"name":"laptop","scopes":["tasks:read"]}', headers=headers
    )
    assert first.status_code == 201, first.text
    again = await client.post(
        "/api/v1/api-keys",
        content=b'{\n  "scopes": [ "tasks:read" ],\n  "name": "laptop"\n}\n',
        headers=headers,
    )
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    changed = b'{"name": "laptop", "scopes": ["tasks:write"]}'
    other = await client.post("/api/v1/api-keys", content=changed, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await _keys(app, admin) == 1
