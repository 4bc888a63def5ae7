"""Cancel, pause and resume of tasks no worker has picked up, and the 409s of the machine."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from taskgate.db.session import Database
from taskgate.models import QueueJob
from taskgate.tasks.states import LEGAL, TaskStatus
from tests.support.clients import User
from tests.tasks.flows import events, get_task, submit, types_of


async def control(
    client: httpx.AsyncClient, user: User, task_id: str, action: str, reason: str | None = None
) -> httpx.Response:
    body = {"reason": reason} if reason else None
    return await client.post(f"/api/v1/tasks/{task_id}/{action}", json=body, headers=user.headers)


async def queue_statuses(app: FastAPI) -> list[str]:
    db: Database = app.state.db
    async with db.transaction(write=False) as session:
        return list((await session.scalars(select(QueueJob.status).order_by(QueueJob.id))).all())


async def test_cancel_queued_task_is_final_at_once(
    client: httpx.AsyncClient, app: FastAPI, alice: User
) -> None:
    created = await submit(client, alice, commands=["sleep 1"])
    response = await control(client, alice, created["task_id"], "cancel", "changed my mind")
    assert response.status_code == 202
    assert response.json() == {"success": True, "message": "Task cancelled."}
    task = await get_task(client, alice, created["task_id"])
    assert task["status"] == "CANCELLED"
    assert task["completed_at"] is not None
    assert await queue_statuses(app) == ["cancelled"]
    found = await events(client, alice, created["task_id"])
    assert types_of(found) == ["task.created", "task.cancelled"]
    assert found[1]["payload"]["reason"] == "changed my mind"


async def test_pause_and_resume_queued_task(
    client: httpx.AsyncClient, app: FastAPI, alice: User
) -> None:
    created = await submit(client, alice, commands=["true"])
    task_id = created["task_id"]
    assert (await control(client, alice, task_id, "pause", "hold on")).status_code == 202
    state = (
        await client.get(f"/api/v1/tasks/{task_id}/control-state", headers=alice.headers)
    ).json()
    assert state["is_paused"] is True
    assert state["status"] == "PAUSED"
    assert (state["pause_reason"], state["paused_by"]) == ("hold on", "alice")
    assert state["paused_at"] is not None
    assert await queue_statuses(app) == ["cancelled"]
    assert (await control(client, alice, task_id, "pause")).status_code == 409
    resumed = await control(client, alice, task_id, "resume")
    assert resumed.status_code == 202
    assert (await get_task(client, alice, task_id))["status"] == "QUEUED"
    assert await queue_statuses(app) == ["cancelled", "queued"]
    state = (
        await client.get(f"/api/v1/tasks/{task_id}/control-state", headers=alice.headers)
    ).json()
    assert state["is_paused"] is False
    assert state["paused_at"] is None
    assert types_of(await events(client, alice, task_id)) == [
        "task.created",
        "task.paused",
        "task.resumed",
    ]
    assert (await control(client, alice, task_id, "resume")).status_code == 409


async def test_paused_task_can_be_cancelled(client: httpx.AsyncClient, alice: User) -> None:
    created = await submit(client, alice, commands=["true"])
    await control(client, alice, created["task_id"], "pause")
    assert (await control(client, alice, created["task_id"], "cancel")).status_code == 202
    assert (await get_task(client, alice, created["task_id"]))["status"] == "CANCELLED"


@pytest.mark.parametrize("action", ["cancel", "pause", "resume"])
async def test_final_tasks_refuse_every_control(
    client: httpx.AsyncClient, alice: User, action: str
) -> None:
    created = await submit(client, alice, query="no model configured")
    response = await control(client, alice, created["task_id"], action)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "CONFLICT"
    assert "FAILED" in error["message"]


async def test_unknown_task_is_404(client: httpx.AsyncClient, alice: User) -> None:
    missing = "0190f3a0-0000-7000-8000-000000000000"
    assert (await client.get(f"/api/v1/tasks/{missing}", headers=alice.headers)).status_code == 404
    assert (await control(client, alice, missing, "cancel")).status_code == 404


def test_final_states_have_no_way_out() -> None:
    for status in (
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMEOUT,
    ):
        assert LEGAL[status] == frozenset()
    assert TaskStatus.RUNNING in LEGAL[TaskStatus.QUEUED]
    assert TaskStatus.COMPLETED not in LEGAL[TaskStatus.QUEUED]
