"""Catch-up after downtime and overlap with runs still in flight, on a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from taskgate.identity.user_service import ensure_first_admin
from taskgate.jobs import Worker
from taskgate.schedules.clock import ManualClock
from taskgate.schedules.scheduler import Scheduler
from taskgate.settings import Settings
from tests.schedules.conftest import START
from tests.schedules.flows import cancel, create, fired, get, runs, skipped, utc
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login, running_app
from tests.tasks.flows import wait_for_status


@pytest.mark.parametrize("policy", ["skip", "one", "all"])
async def test_catchup_after_an_outage(
    client: httpx.AsyncClient,
    alice: User,
    clock: ManualClock,
    scheduler: Scheduler,
    policy: str,
) -> None:
    created = await create(
        client, alice, cron_expression="*/10 * * * *", catchup=policy, overlap="allow"
    )
    await scheduler.tick()  # 12:00, on time
    clock.set(utc("2026-03-02T13:05"))  # down from 12:00 to 13:05: six occurrences missed
    await scheduler.tick()
    history = await runs(client, alice, created["id"])
    missed = [
        utc(f"2026-03-02T{t}") for t in ("12:10", "12:20", "12:30", "12:40", "12:50", "13:00")
    ]
    late = [r for r in history if r["reason"] == "catchup" and r["status"] == "fired"]
    if policy == "skip":
        assert fired(history) == [utc("2026-03-02T12:00")]
        assert skipped(history, "catchup") == missed
    elif policy == "one":
        assert fired(history) == [utc("2026-03-02T12:00"), utc("2026-03-02T13:00")]
        assert skipped(history, "catchup") == missed[:-1]
        assert [r["delay_ms"] for r in late] == [5 * 60_000]
    else:
        assert fired(history) == [utc("2026-03-02T12:00"), *missed]
        assert [r["delay_ms"] // 60_000 for r in late] == [55, 45, 35, 25, 15, 5]
    schedule = await get(client, alice, created["id"])
    assert schedule["next_run_at"] == "2026-03-02T13:10:00Z"


async def test_catchup_skip_still_fires_an_occurrence_within_grace(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    created = await create(client, alice, cron_expression="*/10 * * * *", overlap="allow")
    clock.set(utc("2026-03-02T12:30:40"))
    await scheduler.tick()
    history = await runs(client, alice, created["id"])
    assert skipped(history, "catchup") == [
        utc("2026-03-02T12:00"),
        utc("2026-03-02T12:10"),
        utc("2026-03-02T12:20"),
    ]
    [on_time] = [r for r in history if r["status"] == "fired"]
    assert on_time["reason"] is None
    assert on_time["delay_ms"] == 40_000


async def test_catchup_all_is_capped(
    client: httpx.AsyncClient, app: FastAPI, alice: User, clock: ManualClock
) -> None:
    settings = app.state.settings
    capped = settings.model_copy(
        update={"scheduler": settings.scheduler.model_copy(update={"catchup_cap": 2})}
    )
    scheduler = Scheduler(app.state.db, capped, clock)
    created = await create(
        client, alice, cron_expression="*/10 * * * *", catchup="all", overlap="allow"
    )
    clock.set(utc("2026-03-02T12:45"))
    await scheduler.tick()
    history = await runs(client, alice, created["id"])
    assert fired(history) == [utc("2026-03-02T12:30"), utc("2026-03-02T12:40")]
    assert skipped(history, "catchup") == [
        utc("2026-03-02T12:00"),
        utc("2026-03-02T12:10"),
        utc("2026-03-02T12:20"),
    ]


async def test_overlap_skip_with_a_long_running_task(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    created = await create(client, alice, cron_expression="*/10 * * * *")
    await scheduler.tick()
    clock.set(utc("2026-03-02T12:10"))
    await scheduler.tick()  # the 12:00 task has not finished (no worker runs it)
    [first, second] = await runs(client, alice, created["id"])
    assert (second["status"], second["reason"], second["task_id"]) == ("skipped", "overlap", None)
    await cancel(client, alice, first["task_id"])
    clock.set(utc("2026-03-02T12:20"))
    await scheduler.tick()
    history = await runs(client, alice, created["id"])
    assert fired(history) == [utc("2026-03-02T12:00"), utc("2026-03-02T12:20")]
    assert history[0]["outcome"] == "CANCELLED"
    assert history[2]["outcome"] == "QUEUED"


async def test_overlap_buffer_one_starts_one_when_the_run_ends(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    created = await create(client, alice, cron_expression="*/10 * * * *", overlap="buffer_one")
    await scheduler.tick()
    for minute in ("12:10", "12:20"):
        clock.set(utc(f"2026-03-02T{minute}"))
        await scheduler.tick()
    schedule = await get(client, alice, created["id"])
    assert schedule["buffered_for"] == "2026-03-02T12:10:00Z"
    statuses = [(r["status"], r["reason"]) for r in await runs(client, alice, created["id"])]
    assert statuses == [("fired", None), ("buffered", "overlap"), ("skipped", "overlap")]
    clock.set(utc("2026-03-02T12:25"))
    assert (await scheduler.tick()).fired == 0  # still running
    first = (await runs(client, alice, created["id"]))[0]
    await cancel(client, alice, first["task_id"])
    clock.advance(seconds=1)
    assert (await scheduler.tick()).fired == 1
    history = await runs(client, alice, created["id"])
    assert [(r["status"], r["reason"]) for r in history] == [
        ("fired", None),
        ("fired", "buffered"),
        ("skipped", "overlap"),
    ]
    assert history[1]["delay_ms"] == 15 * 60_000 + 1000
    assert (await get(client, alice, created["id"]))["buffered_for"] is None


async def test_overlap_allow_is_bounded_by_max_concurrent_runs(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, scheduler: Scheduler
) -> None:
    created = await create(client, alice, cron_expression="*/10 * * * *", max_concurrent_runs=2)
    assert created["overlap"] == "allow"
    for minute in ("12:00", "12:10", "12:20"):
        clock.set(utc(f"2026-03-02T{minute}"))
        await scheduler.tick()
    history = await runs(client, alice, created["id"])
    assert [(r["status"], r["reason"]) for r in history] == [
        ("fired", None),
        ("fired", None),
        ("skipped", "max_concurrent_runs"),
    ]
    await cancel(client, alice, history[0]["task_id"])
    clock.set(utc("2026-03-02T12:30"))
    await scheduler.tick()
    assert fired(await runs(client, alice, created["id"]))[-1] == utc("2026-03-02T12:30")


async def test_overlap_skip_while_a_task_really_runs(
    settings_factory: Callable[..., Settings], sandbox_dir: Path
) -> None:
    settings = settings_factory().model_copy(update={"data_dir": sandbox_dir})
    async with running_app(settings, [Worker(concurrency=2)]) as (app, client):
        clock = ManualClock(START)
        app.state.schedule_clock = clock
        scheduler = Scheduler(app.state.db, settings, clock)
        async with app.state.db.transaction() as session:
            await ensure_first_admin(session, ADMIN_PASSWORD)
        user = await create_user(client, await login(client, "admin", ADMIN_PASSWORD), "erin")
        created = await create(
            client, user, cron_expression="*/10 * * * *", task={"commands": ["sleep 3"]}
        )
        await scheduler.tick()
        [first] = await runs(client, user, created["id"])
        await wait_for_status(client, user, first["task_id"], "RUNNING")
        clock.set(utc("2026-03-02T12:10"))
        await scheduler.tick()
        await wait_for_status(client, user, first["task_id"], "COMPLETED")
        clock.set(utc("2026-03-02T12:20"))
        await scheduler.tick()
        history = await runs(client, user, created["id"])
        assert [(r["status"], r["reason"]) for r in history] == [
            ("fired", None),
            ("skipped", "overlap"),
            ("fired", None),
        ]
        assert history[0]["outcome"] == "COMPLETED"
        assert history[0]["started_at"] is not None
        assert history[0]["finished_at"] is not None
