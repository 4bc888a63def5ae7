"""When the ground gives way (the database out of reach, the disk full) a request answers at
once with the error envelope: 503 with Retry-After, or 507, never a 500 or a hang."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from taskgate.identity.user_service import ensure_first_admin
from tests.conftest import make_settings
from tests.support.clients import ADMIN_PASSWORD, login, running_app
from tests.support.databases import PostgresDatabase, migrate, sqlite_url
from tests.support.relay import Relay

TASK = {"commands": ["echo hello"]}


@pytest.fixture
async def relay(postgres: PostgresDatabase) -> AsyncIterator[Relay]:
    url = make_url(postgres.url)
    engine = create_async_engine(postgres.url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    proxy = Relay(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.close()


def _through(relay: Relay, postgres: PostgresDatabase) -> str:
    url = make_url(postgres.url).set(host="127.0.0.1", port=relay.port)
    return url.render_as_string(hide_password=False)


async def _admin_headers(app: Any, client: httpx.AsyncClient) -> dict[str, str]:
    async with app.state.db.transaction() as session:
        await ensure_first_admin(session, ADMIN_PASSWORD)
    admin = await login(client, "admin", ADMIN_PASSWORD)
    created = await client.post("/api/v1/api-keys", json={"name": "k"}, headers=admin.headers)
    return {"X-API-Key": created.json()["key"]}


def _assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    error = answer.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert "database" in error["message"].lower()
    assert error["trace_id"] == answer.headers["x-trace-id"]


async def test_a_database_gone_answers_503_with_retry_after_and_recovers(
    relay: Relay, postgres: PostgresDatabase, tmp_path: Path
) -> None:
    settings = make_settings(
        _through(relay, postgres), tmp_path, auth={"principal_cache_seconds": 0}
    )
    async with running_app(settings) as (app, client):
        headers = await _admin_headers(app, client)
        assert (await client.post("/api/v1/tasks", json=TASK, headers=headers)).status_code == 201

        await relay.cut()
        # Reads, writes, and a write that the idempotency middleware claims before it runs.
        for method, path, extra in [
            ("GET", "/api/v1/tasks", {}),
            ("POST", "/api/v1/tasks", {}),
            ("POST", "/api/v1/tasks", {"Idempotency-Key": "retry-me"}),
            ("GET", "/api/v1/tasks", {}),
        ]:
            body = TASK if method == "POST" else None
            answer = await client.request(method, path, json=body, headers={**headers, **extra})
            _assert_unavailable(answer)

        await relay.restore()
        again = await client.post(
            "/api/v1/tasks", json=TASK, headers={**headers, "Idempotency-Key": "retry-me"}
        )
        assert again.status_code == 201, again.text


async def test_a_database_that_never_answers_is_a_503_within_the_connect_timeout(
    relay: Relay, postgres: PostgresDatabase, tmp_path: Path
) -> None:
    settings = make_settings(
        _through(relay, postgres),
        tmp_path,
        database={"connect_timeout_seconds": 1},
        auth={"principal_cache_seconds": 0},
    )
    async with running_app(settings) as (app, client):
        headers = await _admin_headers(app, client)
        await relay.blackhole()
        for _ in range(3):
            started = time.monotonic()
            answer = await client.get("/api/v1/tasks", headers=headers, timeout=20)
            _assert_unavailable(answer)
            assert time.monotonic() - started < 5


async def test_a_full_disk_answers_507_and_saves_nothing(tmp_path: Path) -> None:
    settings = make_settings(sqlite_url(tmp_path), tmp_path)
    engine = create_async_engine(settings.database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    async with running_app(settings) as (app, client):
        headers = await _admin_headers(app, client)
        listed = await client.get("/api/v1/tasks", headers=headers)
        before = listed.json()["results"]

        # The database may grow no further: SQLite then fails writes with SQLITE_FULL,
        # exactly as on a full disk.
        sync_engine = app.state.db.engine.sync_engine

        def cap(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA page_count")
            pages = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
            cursor.close()

        await app.state.db.engine.dispose()
        event.listen(sync_engine, "connect", cap)
        big = {"commands": ["echo " + "x" * 4000] * 40}
        answer = await client.post("/api/v1/tasks", json=big, headers=headers)
        assert answer.status_code == 507, answer.text
        error = answer.json()["error"]
        assert error["code"] == "INSUFFICIENT_STORAGE"
        assert "space" in error["message"]

        event.remove(sync_engine, "connect", cap)
        await app.state.db.engine.dispose()
        after = await client.get("/api/v1/tasks", headers=headers)
        assert after.json()["results"] == before
        assert (await client.post("/api/v1/tasks", json=big, headers=headers)).status_code == 201
