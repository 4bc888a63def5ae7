"""The request's project costs no database round trip on the hot paths once its answer is
cached: ``GET /users/me`` and ``POST /tasks`` run the same statements whether the request
names a project or not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event

from tests.conftest import AppFactory
from tests.identity.api import first_admin
from tests.support.clients import ADMIN_PASSWORD, create_user, login


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL the app sends while the block runs."""
    seen: list[str] = []
    engine = app.state.db.engine.sync_engine

    def record(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        seen.append(sql)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_naming_a_project_adds_no_query(app_factory: AppFactory) -> None:
    # A long cache lifetime, so that nothing expires during the measured requests.
    async with app_factory(auth={"principal_cache_seconds": 600}) as (app, client):
        await first_admin(app)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        alice = await create_user(client, admin, "alice")
        made = await client.post("/api/v1/projects", json={"name": "Studio"}, headers=alice.headers)
        assert made.status_code == 201
        named = {**alice.headers, "X-Tenant-ID": "studio"}
        for headers in (alice.headers, named):  # warm the caches
            assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
            assert (
                await client.post("/api/v1/tasks", json=_TASK, headers=headers)
            ).status_code == 201

        with statements(app) as seen:
            for headers in (alice.headers, named):
                for _ in range(3):
                    me = await client.get("/api/v1/users/me", headers=headers)
                    assert me.status_code == 200
                    task = await client.post("/api/v1/tasks", json=_TASK, headers=headers)
                    assert task.status_code == 201
        # Only the tasks' own writes (and the event bus's background reads) reached the
        # database: nothing looked up a credential, a user or a project.
        lookups = [sql for sql in seen if _LOOKUP.search(sql)]
        assert lookups == []
        assert sum("INSERT INTO tasks" in sql for sql in seen) >= 1


_TASK = {"commands": ["true"]}
_LOOKUP = re.compile(
    r"\bFROM (projects|role_bindings|group_members|groups|access_rules|users|api_keys)\b"
)
