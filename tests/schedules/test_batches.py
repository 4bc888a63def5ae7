"""Schedules due together fire together: one transaction per batch, and what one schedule
gets wrong stays with that schedule."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import update
from structlog.testing import capture_logs

from taskgate.db.session import Database
from taskgate.ids import new_id
from taskgate.models import Schedule, ScheduleRun
from taskgate.schedules.clock import ManualClock
from taskgate.schedules.scheduler import Scheduler
from tests.schedules.flows import create, get, runs, tasks_of, utc
from tests.support.clients import User

RETRIED = "schedule_batch_retried_one_by_one"


async def _workflow(client: httpx.AsyncClient, user: User) -> str:
    graph = {"nodes": [{"id": "say", "type": "log", "config": {"message": "hi"}}], "edges": []}
    response = await client.post(
        "/api/v1/workflows", json={"name": "report", "graph": graph}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


async def test_schedules_that_cannot_start_do_not_hold_back_their_batch(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: User,
    bob: User,
    clock: ManualClock,
    scheduler: Scheduler,
) -> None:
    good = [(await create(client, alice, cron_expression="@hourly"))["id"] for _ in range(3)]
    text = (await create(client, alice, cron_expression="@hourly", task_query="Summarize"))["id"]
    bobs = await client.post("/api/v1/tasks", json={"commands": ["true"]}, headers=bob.headers)
    foreign = await create(
        client,
        alice,
        cron_expression="@hourly",
        task={"commands": ["true"], "session_id": bobs.json()["session_id"]},
    )
    stale = (await create(client, alice, cron_expression="@hourly"))["id"]
    workflow_id = await _workflow(client, alice)
    disabled = await create(client, alice, cron_expression="@hourly", workflow_id=workflow_id)
    response = await client.patch(
        f"/api/v1/workflows/{workflow_id}", json={"enabled": False}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    db: Database = app.state.db
    async with db.transaction() as session:
        # A template saved before the task contract tightened: no longer a valid task.
        await session.execute(
            update(Schedule)
            .where(Schedule.id == uuid.UUID(stale))
            .values(task_template={"commands": ["true"], "priority": 99})
        )

    with capture_logs() as logs:
        tally = await scheduler.tick()

    assert (tally.fired, tally.skipped) == (4, 3)
    assert RETRIED not in [e["event"] for e in logs]  # all in the batch's one transaction
    for schedule_id in [*good, text]:
        [run] = await runs(client, alice, schedule_id)
        [task] = await tasks_of(app, schedule_id)
        assert (run["status"], run["task_id"]) == ("fired", str(task.id))
    for schedule_id, says in (
        (foreign["id"], "not found"),
        (stale, "priority"),
        (disabled["id"], "disabled"),
    ):
        [run] = await runs(client, alice, schedule_id)
        assert (run["status"], run["reason"], run["task_id"]) == ("skipped", "error", None)
        assert run["execution_id"] is None
        assert says in run["error"].lower()
        assert await tasks_of(app, schedule_id) == []
    for schedule_id in [*good, text, foreign["id"], stale, disabled["id"]]:
        assert (await get(client, alice, schedule_id))["next_run_at"] == "2026-03-02T13:00:00Z"


async def test_an_occurrence_recorded_meanwhile_costs_only_its_own_firing(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: User,
    clock: ManualClock,
    scheduler: Scheduler,
) -> None:
    ids = [(await create(client, alice, cron_expression="@hourly"))["id"] for _ in range(4)]
    raced = ids[1]
    db: Database = app.state.db
    async with db.transaction() as session:
        # As if another scheduler had just recorded this occurrence.
        session.add(
            ScheduleRun(
                id=new_id(),
                schedule_id=uuid.UUID(raced),
                scheduled_for=utc("2026-03-02T12:00"),
                trigger="schedule",
                status="skipped",
                reason="skip-next",
            )
        )

    with capture_logs() as logs:
        tally = await scheduler.tick()

    # The batch's shared transaction failed on the history's unique key and was redone one
    # schedule at a time: the others fired once each, the raced one not a second time.
    events = [e["event"] for e in logs]
    assert RETRIED in events
    assert "schedule_occurrence_already_recorded" in events
    assert tally.fired == 3
    for schedule_id in ids:
        history = await runs(client, alice, schedule_id)
        tasks = await tasks_of(app, schedule_id)
        if schedule_id == raced:
            assert [(r["status"], r["reason"]) for r in history] == [("skipped", "skip-next")]
            assert tasks == []
        else:
            assert [(r["status"], r["task_id"]) for r in history] == [("fired", str(tasks[0].id))]
            assert len(tasks) == 1
