"""What schedule tests do over and over: define a schedule, read it, read its history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from taskgate.db.session import Database
from taskgate.models import Task
from taskgate.schedules.clock import ManualClock
from taskgate.schedules.scheduler import Scheduler
from tests.support.clients import User

COMMANDS = {"commands": ["echo scheduled"]}


async def create(client: httpx.AsyncClient, user: User, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "nightly")
    if not {"task", "task_query", "workflow_id"} & body.keys():
        body["task"] = COMMANDS
    response = await client.post("/api/v1/schedules", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def get(client: httpx.AsyncClient, user: User, schedule_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/schedules/{schedule_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def action(
    client: httpx.AsyncClient, user: User, schedule_id: str, verb: str, status: int = 200
) -> dict[str, Any]:
    response = await client.post(f"/api/v1/schedules/{schedule_id}/{verb}", headers=user.headers)
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def runs(client: httpx.AsyncClient, user: User, schedule_id: str) -> list[dict[str, Any]]:
    """The whole history, oldest first, following ``next`` links."""
    found: list[dict[str, Any]] = []
    url: str | None = f"/api/v1/schedules/{schedule_id}/runs?ordering=scheduled_for&limit=100"
    while url:
        response = await client.get(url, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["results"]
        url = page["next"]
    return found


def at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def fired(history: list[dict[str, Any]]) -> list[datetime]:
    return [at(r["scheduled_for"]) for r in history if r["status"] == "fired"]


def skipped(history: list[dict[str, Any]], reason: str | None = None) -> list[datetime]:
    return [
        at(r["scheduled_for"])
        for r in history
        if r["status"] == "skipped" and (reason is None or r["reason"] == reason)
    ]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def run_until(
    client: httpx.AsyncClient,
    user: User,
    scheduler: Scheduler,
    clock: ManualClock,
    schedule_id: str,
    end: datetime,
) -> list[dict[str, Any]]:
    """Move the clock to each next occurrence up to ``end`` and let the scheduler fire it."""
    while True:
        schedule = await get(client, user, schedule_id)
        if schedule["next_run_at"] is None or at(schedule["next_run_at"]) > end:
            return await runs(client, user, schedule_id)
        clock.set(at(schedule["next_run_at"]))
        await scheduler.tick()


async def cancel(client: httpx.AsyncClient, user: User, task_id: str) -> None:
    response = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=user.headers)
    assert response.status_code == 202, response.text


async def tasks_of(app: FastAPI, schedule_id: str) -> list[Task]:
    db: Database = app.state.db
    async with db.transaction(write=False) as session:
        rows = await session.scalars(select(Task).order_by(Task.created_at))
        return [t for t in rows if f"schedule:{schedule_id}" in t.labels]
