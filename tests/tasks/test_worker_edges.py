"""The task runner at the edges of the queue: a lease it no longer holds, a job the queue
gave up on."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from taskgate.db.session import Database
from taskgate.models import QueueJob, Task
from taskgate.runtime.context import JobContext, LeaseLost, Runtime
from taskgate.tasks.jobs import on_task_dead, run_task
from tests.support.clients import User
from tests.tasks.flows import events, get_task, submit, types_of


async def queue_job_of(db: Database, task_id: str) -> QueueJob:
    async with db.transaction(write=False) as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        job = await session.scalar(select(QueueJob).where(QueueJob.id == task.queue_job_id))
        assert job is not None
        return job


async def test_a_worker_without_the_lease_writes_nothing(
    client: httpx.AsyncClient, app: FastAPI, alice: User
) -> None:
    created = await submit(client, alice, commands=["echo never"])
    db: Database = app.state.db
    job = await queue_job_of(db, created["task_id"])
    runtime = Runtime.create(app.state.settings, db)
    # Nobody claimed the job, so no fencing token is current: the handler must stop at once.
    ctx = JobContext(runtime, job.id, "task.run", job.payload, 1, 3, fencing_token=7)
    with pytest.raises(LeaseLost):
        await run_task(ctx)
    task = await get_task(client, alice, created["task_id"])
    assert (task["status"], task["attempts"]) == ("QUEUED", 0)
    assert types_of(await events(client, alice, created["task_id"])) == ["task.created"]


async def test_a_dead_job_fails_its_task_once(
    client: httpx.AsyncClient, app: FastAPI, alice: User
) -> None:
    created = await submit(client, alice, commands=["true"])
    db: Database = app.state.db
    job = await queue_job_of(db, created["task_id"])
    runtime = Runtime.create(app.state.settings, db)
    reason = "lease expired after 3 attempts"
    await on_task_dead(runtime, job.id, "task.run", job.payload, reason)
    task = await get_task(client, alice, created["task_id"])
    assert (task["status"], task["error_code"]) == ("FAILED", "WORKER_LOST")
    assert reason in task["error"]
    await on_task_dead(runtime, job.id, "task.run", job.payload, reason)  # told twice
    found = types_of(await events(client, alice, created["task_id"]))
    assert found == ["task.created", "task.failed"]


async def test_a_stale_dead_job_leaves_a_resumed_task_alone(
    client: httpx.AsyncClient, app: FastAPI, alice: User
) -> None:
    created = await submit(client, alice, commands=["true"])
    db: Database = app.state.db
    old = await queue_job_of(db, created["task_id"])
    for action in ("pause", "resume"):
        response = await client.post(
            f"/api/v1/tasks/{created['task_id']}/{action}", headers=alice.headers
        )
        assert response.status_code == 202
    runtime = Runtime.create(app.state.settings, db)
    await on_task_dead(runtime, old.id, "task.run", old.payload, "gave up")
    assert (await get_task(client, alice, created["task_id"]))["status"] == "QUEUED"
