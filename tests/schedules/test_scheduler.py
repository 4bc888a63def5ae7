"""The scheduler on a clock the test moves: DST, one-offs, intervals, pause, skip-next,
jitter, and what one firing writes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from taskgate.db.session import Database
from taskgate.models import Event, ScheduleRun
from taskgate.schedules.clock import ManualClock
from taskgate.schedules.occurrences import jitter
from taskgate.schedules.scheduler import Scheduler
from tests.schedules.flows import (
    action,
    create,
    fired,
    get,
    run_until,
    runs,
    skipped,
    tasks_of,
    utc,
)
from tests.support.clients import User


@pytest.mark.parametrize(
    ("zone", "cron", "start", "end", "expected"),
    [
        pytest.param(
            "America/New_York",
            "30 2 * * *",
            "2026-03-07",
            "2026-03-10",
            ["2026-03-07T07:30", "2026-03-08T07:30", "2026-03-09T06:30"],
            id="new-york-spring-forward-gap-shifts-to-03:30",
        ),
        pytest.param(
            "America/New_York",
            "30 1 * * *",
            "2026-10-31",
            "2026-11-03",
            ["2026-10-31T05:30", "2026-11-01T05:30", "2026-11-02T06:30"],
            id="new-york-fall-back-repeated-time-fires-once",
        ),
        pytest.param(
            "Europe/Berlin",
            "0 9 * * *",
            "2026-03-28",
            "2026-03-31",
            ["2026-03-28T08:00", "2026-03-29T07:00", "2026-03-30T07:00"],
            id="berlin-spring-forward-keeps-09:00-local",
        ),
        pytest.param(
            "Europe/Berlin",
            "@hourly",
            "2026-10-24T22:30",
            "2026-10-25T03:30",
            [
                "2026-10-24T23:00",
                "2026-10-25T00:00",
                "2026-10-25T01:00",
                "2026-10-25T02:00",
                "2026-10-25T03:00",
            ],
            id="berlin-fall-back-hourly-fires-every-real-hour",
        ),
        pytest.param(
            "Australia/Sydney",
            "0 2 * * *",
            "2026-04-03",
            "2026-04-06",
            ["2026-04-03T15:00", "2026-04-04T15:00", "2026-04-05T16:00"],
            id="sydney-dst-ends-in-april",
        ),
        pytest.param(
            "Australia/Sydney",
            "30 2 * * *",
            "2026-10-02",
            "2026-10-05",
            ["2026-10-02T16:30", "2026-10-03T16:30", "2026-10-04T15:30"],
            id="sydney-dst-starts-in-october",
        ),
    ],
)
async def test_cron_fires_at_the_right_instants_across_dst(
    client: httpx.AsyncClient,
    alice: User,
    clock: ManualClock,
    scheduler: Scheduler,
    zone: str,
    cron: str,
    start: str,
    end: str,
    expected: list[str],
) -> None:
    clock.set(utc(start))
    # Tasks stay queued (no worker runs here), so runs must be allowed to overlap.
    created = await create(client, alice, cron_expression=cron, timezone=zone, overlap="allow")
    history = await run_until(client, alice, scheduler, clock, created["id"], utc(end))
    assert fired(history) == [utc(e) for e in expected]
    assert all(r["delay_ms"] == 0 and r["reason"] is None for r in history)
    assert len({r["task_id"] for r in history}) == len(expected)


async def test_one_off_fires_once_then_completes(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: User,
    clock: ManualClock,
    scheduler: Scheduler,
) -> None:
    created = await create(client, alice, run_at="2026-03-02T12:30:00Z")
    clock.set(utc("2026-03-02T12:29:59"))
    assert (await scheduler.tick()).fired == 0
    clock.set(utc("2026-03-02T12:30:00.250"))
    assert (await scheduler.tick()).fired == 1
    schedule = await get(client, alice, created["id"])
    assert schedule["status"] == "COMPLETED"
    assert schedule["next_run_at"] is None
    clock.advance(days=2)
    assert (await scheduler.tick()).fired == 0
    [run] = await runs(client, alice, created["id"])
    assert run["delay_ms"] == 250
    assert run["fired_at"] == "2026-03-02T12:30:00.250000Z"
    [task] = await tasks_of(app, created["id"])
    assert str(task.id) == run["task_id"]
    assert task.status == "QUEUED"


async def test_interval_keeps_its_grid_through_dst(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    clock.set(utc("2026-03-08T05:00"))
    created = await create(
        client,
        alice,
        interval_seconds=3600,
        timezone="America/New_York",
        overlap="allow",
        start_at="2026-03-08T05:30:00Z",
    )
    history = await run_until(
        client, alice, scheduler, clock, created["id"], utc("2026-03-08T09:30")
    )
    # Every real hour, whatever the wall clock does at 02:00 local.
    assert fired(history) == [utc(f"2026-03-08T0{h}:30") for h in range(5, 10)]
    assert [r["scheduled_for_local"][11:16] for r in history] == [
        "00:30",
        "01:30",
        "03:30",
        "04:30",
        "05:30",
    ]


async def test_paused_schedules_do_not_fire_and_resume_owes_nothing(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    created = await create(client, alice, cron_expression="0 * * * *", catchup="all")
    await action(client, alice, created["id"], "pause")
    clock.set(utc("2026-03-02T15:30"))
    assert (await scheduler.tick()).fired == 0
    resumed = await action(client, alice, created["id"], "resume")
    assert resumed["next_run_at"] == "2026-03-02T16:00:00Z"
    clock.set(utc("2026-03-02T16:00"))
    await scheduler.tick()
    assert fired(await runs(client, alice, created["id"])) == [utc("2026-03-02T16:00")]


async def test_skip_next_then_the_following_occurrence_fires(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    created = await create(client, alice, cron_expression="0 * * * *", overlap="allow")
    clock.set(utc("2026-03-02T12:01"))
    await scheduler.tick()  # 12:00
    await action(client, alice, created["id"], "skip-next")  # 13:00
    for hour in ("13:00", "14:00"):
        clock.set(utc(f"2026-03-02T{hour}"))
        await scheduler.tick()
    history = await runs(client, alice, created["id"])
    assert fired(history) == [utc("2026-03-02T12:00"), utc("2026-03-02T14:00")]
    assert skipped(history, "skip-next") == [utc("2026-03-02T13:00")]


async def test_jitter_delays_each_occurrence_by_a_fixed_offset(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    created = await create(client, alice, interval_seconds=600, jitter_seconds=120)
    occurrence = utc("2026-03-02T12:10")
    offset = jitter(uuid.UUID(created["id"]), occurrence, 120)
    assert timedelta(0) < offset <= timedelta(seconds=120)
    clock.set(occurrence)
    assert (await scheduler.tick()).fired == 0
    clock.set(occurrence + offset)
    assert (await scheduler.tick()).fired == 1
    [run] = await runs(client, alice, created["id"])
    assert run["scheduled_for"] == "2026-03-02T12:10:00Z"
    assert run["delay_ms"] == offset // timedelta(milliseconds=1)


async def test_firing_writes_task_history_and_events_together(
    client: httpx.AsyncClient,
    app: FastAPI,
    alice: User,
    clock: ManualClock,
    scheduler: Scheduler,
) -> None:
    created = await create(client, alice, cron_expression="@hourly", task_query="Summarize")
    await scheduler.tick()
    await action(client, alice, created["id"], "skip-next")
    [run, skipped_run] = await runs(client, alice, created["id"])
    db: Database = app.state.db
    async with db.transaction(write=False) as session:
        events = list((await session.scalars(select(Event).order_by(Event.id))).all())
    by_type = {e.type: e for e in events}
    fired_event = by_type["schedule.fired"]
    assert str(fired_event.task_id) == run["task_id"]
    assert fired_event.payload["schedule_id"] == created["id"]
    assert fired_event.payload["scheduled_for"] == "2026-03-02T12:00:00+00:00"
    assert by_type["task.created"].task_id == fired_event.task_id
    assert by_type["schedule.skipped"].payload["reason"] == "skip-next"
    task = (await client.get(f"/api/v1/tasks/{run['task_id']}", headers=alice.headers)).json()
    assert task["query"] == "Summarize"
    # No model is configured in tests, so a text task fails fast: that is its outcome.
    assert run["outcome"] == task["status"] == "FAILED"
    assert skipped_run["outcome"] is None


async def test_an_inactive_owners_occurrences_are_skipped(
    client: httpx.AsyncClient,
    app: FastAPI,
    admin: User,
    alice: User,
    clock: ManualClock,
    scheduler: Scheduler,
) -> None:
    await create(client, alice, cron_expression="@hourly")
    response = await client.post(f"/api/v1/users/{alice.id}/disable", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert (await scheduler.tick()).skipped == 1
    db: Database = app.state.db
    async with db.transaction(write=False) as session:
        [row] = (await session.scalars(select(ScheduleRun))).all()
    assert (row.status, row.reason, row.task_id) == ("skipped", "owner_inactive", None)


async def test_a_target_that_cannot_start_is_recorded_not_retried(
    client: httpx.AsyncClient, alice: User, bob: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    bobs = await client.post("/api/v1/tasks", json={"commands": ["true"]}, headers=bob.headers)
    session_id = bobs.json()["session_id"]
    created = await create(
        client,
        alice,
        cron_expression="@hourly",
        task={"commands": ["true"], "session_id": session_id},
    )
    await scheduler.tick()
    [run] = await runs(client, alice, created["id"])
    assert (run["status"], run["reason"], run["task_id"]) == ("skipped", "error", None)
    assert "not found" in run["error"].lower()
    schedule = await get(client, alice, created["id"])
    assert schedule["next_run_at"] == "2026-03-02T13:00:00Z"
    assert schedule["total_runs"] == 0


async def test_two_schedulers_racing_fire_each_occurrence_once(
    client: httpx.AsyncClient, app: FastAPI, alice: User, clock: ManualClock
) -> None:
    settings = app.state.settings
    small = settings.model_copy(
        update={"scheduler": settings.scheduler.model_copy(update={"batch_size": 3})}
    )
    one = Scheduler(app.state.db, small, clock)
    two = Scheduler(app.state.db, small, clock)
    ids = [
        (await create(client, alice, cron_expression="*/10 * * * *", overlap="allow"))["id"]
        for _ in range(8)
    ]
    for minute in ("12:00", "12:10", "12:20"):
        clock.set(utc(f"2026-03-02T{minute}"))
        tallies = await asyncio.gather(one.tick(), two.tick(), one.tick())
        assert sum(t.fired for t in tallies) == len(ids)
    for schedule_id in ids:
        history = await runs(client, alice, schedule_id)
        assert fired(history) == [utc(f"2026-03-02T12:{m}0") for m in (0, 1, 2)]
        assert len(await tasks_of(app, schedule_id)) == 3


async def test_workflow_target_starts_an_execution(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    graph = {"nodes": [{"id": "say", "type": "log", "config": {"message": "hi"}}], "edges": []}
    response = await client.post(
        "/api/v1/workflows", json={"name": "report", "graph": graph}, headers=alice.headers
    )
    assert response.status_code == 201, response.text
    workflow_id = response.json()["id"]
    created = await create(
        client, alice, cron_expression="@hourly", workflow_id=workflow_id, input={"who": "ops"}
    )
    assert created["workflow_id"] == workflow_id
    assert created["input"] == {"who": "ops"}
    assert created["task"] is None
    await scheduler.tick()
    [run] = await runs(client, alice, created["id"])
    assert run["task_id"] is None
    execution = await client.get(f"/api/v1/executions/{run['execution_id']}", headers=alice.headers)
    assert execution.status_code == 200, execution.text
    body = execution.json()
    assert body["trigger"] == "schedule"
    assert body["input"] == {"who": "ops"}
    assert run["outcome"] == body["status"]
