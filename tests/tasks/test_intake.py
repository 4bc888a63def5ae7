"""Many submissions at once: each is stored once with its job and event, a refused one does
not take the others down (on PostgreSQL they share group commits)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from taskgate.db.session import Database
from taskgate.models import ChatSession, Event, QueueJob, Task
from tests.support.clients import User
from tests.tasks.flows import submit


async def _count(app: FastAPI, model: type[object]) -> int:
    db: Database = app.state.db
    async with db.transaction(write=False) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_concurrent_submissions_are_each_stored_once(
    app: FastAPI, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    owned = await submit(client, alice, commands=["true"])
    intruder = client.post(
        "/api/v1/tasks",
        json={"commands": ["true"], "session_id": owned["session_id"]},
        headers=bob.headers,
    )
    many = [
        client.post("/api/v1/tasks", json={"commands": [f"echo {n}"]}, headers=alice.headers)
        for n in range(30)
    ]
    refused, *answers = await asyncio.gather(intruder, *many)
    assert refused.status_code == 404, refused.text
    assert [a.status_code for a in answers] == [201] * 30
    assert len({a.json()["task_id"] for a in answers}) == 30
    assert await _count(app, Task) == 31
    assert await _count(app, QueueJob) == 31
    assert await _count(app, Event) == 31
    for answer in answers[:3]:
        task = await client.get(f"/api/v1/tasks/{answer.json()['task_id']}", headers=alice.headers)
        assert task.status_code == 200
        assert task.json()["status"] == "QUEUED"


async def test_concurrent_submissions_naming_one_new_session_share_it(
    app: FastAPI, client: httpx.AsyncClient, alice: User
) -> None:
    chosen = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(
            client.post(
                "/api/v1/tasks",
                json={"commands": ["true"], "session_id": chosen},
                headers=alice.headers,
            )
            for _ in range(10)
        )
    )
    assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers]
    assert {a.json()["session_id"] for a in answers} == {chosen}
    assert await _count(app, ChatSession) == 1
    assert await _count(app, Task) == 10
