"""A governance change made through one API process holds in another, whose caches would
otherwise keep the old answer for as long as they live: through the bus (PostgreSQL NOTIFY,
or Redis), or through the counter each process polls when no bus reaches it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import AppFactory
from tests.events.test_bus import redis_or_skip
from tests.governance.support import bind, in_project, project
from tests.identity.api import first_admin
from tests.support.clients import ADMIN_PASSWORD, create_user, login
from tests.support.waiting import eventually

# Far longer than any test: only an invalidation can make a process read again.
CACHED = 600.0


async def _settings(via: str, database_url: str) -> dict[str, Any]:
    postgres = database_url.startswith("postgresql")
    if via != "poll" and not postgres:
        pytest.skip("one SQLite process needs no bus")
    auth = {"principal_cache_seconds": CACHED, "governance_poll_seconds": 0.05}
    if via == "poll":
        # No bus between the two: SQLite's is in-process, and PostgreSQL's is switched off.
        return {"auth": auth, "streams": {"bus": "memory"}}
    auth["governance_poll_seconds"] = 0
    if via == "redis":
        return {"auth": auth, "redis_url": await redis_or_skip()}
    return {"auth": auth}


@pytest.mark.parametrize("via", ["bus", "redis", "poll"])
async def test_a_binding_made_in_one_process_holds_in_the_other(
    app_factory: AppFactory, database_url: str, via: str
) -> None:
    settings = await _settings(via, database_url)
    async with (
        app_factory(**settings) as (app, one),
        app_factory(**settings) as (_, other),
    ):
        await first_admin(app)
        admin = await login(one, "admin", ADMIN_PASSWORD)
        alice = await create_user(one, admin, "alice")
        bob = await create_user(one, admin, "bob")
        studio = await project(one, alice, "Studio")
        tasks = "/api/v1/tasks"

        async def status() -> int:
            return (await other.get(tasks, headers=in_project(bob, studio))).status_code

        assert await status() == 404  # now cached in the other process

        made = await bind(one, alice, bob.id, "viewer", studio)
        assert made.status_code == 201
        await eventually(lambda: _is(status, 200), timeout=5, what="the binding elsewhere")

        removed = await one.delete(
            f"/api/v1/role-bindings/{made.json()['id']}", headers=alice.headers
        )
        assert removed.status_code == 204
        await eventually(lambda: _is(status, 404), timeout=5, what="the removal elsewhere")

        disabled = await one.post(f"/api/v1/projects/{studio}/disable", headers=alice.headers)
        assert disabled.status_code == 200
        body = {"commands": ["true"]}

        async def submitted() -> int:
            response = await other.post(tasks, json=body, headers=in_project(alice, studio))
            return response.status_code

        await eventually(lambda: _is(submitted, 409), timeout=5, what="the disabled project")


async def _is(check: Any, expected: int) -> bool:
    found: int = await check()
    return found == expected


async def test_the_committing_process_holds_a_change_at_its_next_request(
    client: httpx.AsyncClient, admin: Any, app_factory: AppFactory
) -> None:
    # The process that made the change never waits for anything.
    alice = await create_user(client, admin, "alice")
    bob = await create_user(client, admin, "bob")
    studio = await project(client, alice, "Studio")
    for _ in range(3):
        assert (
            await client.get("/api/v1/tasks", headers=in_project(bob, studio))
        ).status_code == 404
        made = await bind(client, alice, bob.id, "viewer", studio)
        assert (
            await client.get("/api/v1/tasks", headers=in_project(bob, studio))
        ).status_code == 200
        await client.delete(f"/api/v1/role-bindings/{made.json()['id']}", headers=alice.headers)
