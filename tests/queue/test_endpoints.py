"""GET /api/v1/queue: depth by state and priority, the oldest wait, and the workers alive."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.identity.user_service import ensure_first_admin
from taskgate.models import Node
from taskgate.runtime import leases, nodes
from taskgate.runtime.handlers import NOOP
from taskgate.runtime.queue import JobStatus, enqueue, jobs
from taskgate.runtime.worker import Worker
from tests.conftest import AppFactory
from tests.runtime.queue_support import job_status
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login
from tests.support.waiting import eventually

KIND = "test.job"


async def overview(client: httpx.AsyncClient, user: User, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/queue", headers=user.headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_queue_needs_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/queue")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_depth_by_state_and_priority_and_oldest_wait(
    app: FastAPI, client: httpx.AsyncClient, admin: User
) -> None:
    db: Database = app.state.db
    now = utcnow()
    async with db.transaction() as session:
        await enqueue(session, KIND, {}, run_after=now - timedelta(seconds=30))
        await enqueue(session, KIND, {})
        await enqueue(session, KIND, {}, priority=5, run_after=now - timedelta(seconds=1))
        await enqueue(session, KIND, {}, run_after=now + timedelta(hours=1))
        finished = await enqueue(session, "test.other", {})
    async with db.transaction() as session:
        [leased] = await leases.claim(
            session, node_id="node-x", limit=1, kinds=[KIND], lease_seconds=30
        )
        await session.execute(
            update(jobs)
            .where(jobs.c.id == finished.id)
            .values(status=JobStatus.DONE.value, finished_at=now)
        )
    assert leased.kind == KIND

    user = await create_user(client, admin, "watcher")
    body = await overview(client, user)
    assert body["depth"] == {
        "queued": 3,
        "ready": 2,
        "scheduled": 1,
        "leased": 1,
        "done": None,
        "failed": None,
        "dead": None,
        "cancelled": None,
    }
    assert body["by_priority"] == [
        {"priority": 5, "queued": 0, "ready": 0, "leased": 1},
        {"priority": 0, "queued": 3, "ready": 2, "leased": 0},
    ]
    assert 30 <= body["oldest_ready_age_seconds"] < 60
    assert body["capacity"] == {"alive": 0, "slots": 0, "busy": 0}
    assert body["workers"] is None

    counted = await overview(client, user, include_finished="true")
    assert {k: counted["depth"][k] for k in ("done", "failed", "dead", "cancelled")} == {
        "done": 1,
        "failed": 0,
        "dead": 0,
        "cancelled": 0,
    }


async def test_an_empty_queue(client: httpx.AsyncClient, admin: User) -> None:
    body = await overview(client, admin)
    assert body["depth"]["queued"] == 0
    assert body["by_priority"] == []
    assert body["oldest_ready_age_seconds"] is None
    assert body["workers"] == []


async def test_embedded_worker_registers_and_shows_its_capacity(
    app_factory: AppFactory,
) -> None:
    worker = Worker(concurrency=3, kinds={"noop": NOOP})
    async with app_factory(components=[worker]) as (app, client):
        db: Database = app.state.db
        async with db.transaction() as session:
            await nodes.register(
                session, "gone:1:abc", kinds=["noop"], concurrency=50, capabilities={}
            )
            await session.execute(  # silent for longer than three leases: presumed dead
                update(Node)
                .where(Node.id == "gone:1:abc")
                .values(heartbeat_at=utcnow() - timedelta(minutes=5))
            )
        async with db.transaction() as session:
            await ensure_first_admin(session, ADMIN_PASSWORD)
        admin = await login(client, "admin", ADMIN_PASSWORD)

        body = await overview(client, admin)
        assert body["capacity"] == {"alive": 1, "slots": 3, "busy": 0}
        [listed] = body["workers"]
        assert listed["id"] == worker.node_id
        assert (listed["concurrency"], listed["status"], listed["running"]) == (3, "active", 0)
        assert "noop" in listed["kinds"]

        async with db.transaction() as session:  # the embedded worker runs what the API queues
            job = await enqueue(session, "noop", {})
        await eventually(lambda: _is_done(db, job.id))

        user = await create_user(client, admin, "someone")
        body = await overview(client, user)
        assert body["capacity"]["alive"] == 1
        assert body["workers"] is None


async def _is_done(db: Database, job_id: Any) -> bool:
    return await job_status(db, job_id) == "done"
