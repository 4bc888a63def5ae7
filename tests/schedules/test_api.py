"""The schedules API: definitions, validation, limits, ownership, and the actions on one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from taskgate.schedules.clock import ManualClock
from tests.conftest import AppFactory
from tests.schedules.conftest import START
from tests.schedules.flows import action, at, create, get, runs
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login


async def test_cron_schedule_shows_next_run_in_utc_and_in_its_zone(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    response = await client.post(
        "/api/v1/schedules",
        json={
            "name": "standup",
            "cron_expression": "0 9 * * mon-fri",
            "timezone": "Europe/Berlin",
            "task": {"commands": ["echo standup"]},
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/api/v1/schedules/{body['id']}"
    assert response.headers["etag"] == '"1"'
    assert body["status"] == "ACTIVE"
    assert body["enabled"] is True
    # Monday 2026-03-02 12:00 UTC is past 09:00 in Berlin: next is Tuesday 09:00 CET.
    assert body["next_run_at"] == "2026-03-03T08:00:00Z"
    assert body["next_run_at_local"] == "2026-03-03T09:00:00+01:00"
    assert body["catchup"] == "skip"
    assert body["overlap"] == "skip"
    assert await get(client, alice, body["id"]) == {k: v for k, v in body.items() if k != "message"}


async def test_shannon_body_works_as_written(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    response = await client.post(
        "/api/v1/schedules",
        json={
            "name": "Daily summary",
            "description": "Generate daily activity summary",
            "cron_expression": "0 9 * * *",
            "timezone": "America/New_York",
            "task_query": "Summarize yesterday's activity",
            "task_context": {"report_format": "markdown"},
            "max_budget_per_run_usd": 5.0,
            "timeout_seconds": 600,
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["schedule_id"] == body["id"]
    assert body["message"] == "Schedule created successfully"
    assert body["next_run_at"] == "2026-03-02T14:00:00Z"
    assert body["next_run_at_local"] == "2026-03-02T09:00:00-05:00"
    assert body["task_query"] == "Summarize yesterday's activity"
    assert body["task_context"] == {"report_format": "markdown"}
    assert body["timeout_seconds"] == 600
    # Shannon updates with PUT and a partial body.
    response = await client.put(
        f"/api/v1/schedules/{body['id']}",
        json={"cron_expression": "0 10 * * *", "max_budget_per_run_usd": 8.0},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["next_run_at_local"] == "2026-03-02T10:00:00-05:00"
    assert updated["max_budget_per_run_usd"] == 8.0
    assert updated["task_query"] == "Summarize yesterday's activity"
    # Shannon lists with page and page_size.
    response = await client.get(
        "/api/v1/schedules?page=1&page_size=50&status=ACTIVE", headers=alice.headers
    )
    listed = response.json()
    assert listed["total"] == 1
    assert listed["page"] == 1
    assert listed["page_size"] == 50
    assert [s["id"] for s in listed["schedules"]] == [body["id"]]


async def test_timezone_defaults_to_the_owners_preference(
    client: httpx.AsyncClient, admin: User, clock: ManualClock
) -> None:
    response = await client.post(
        "/api/v1/users",
        json={"username": "kiri", "password": "pw-kiri-123", "timezone": "Pacific/Auckland"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    kiri = await login(client, "kiri", "pw-kiri-123")
    body = await create(client, kiri, cron_expression="0 7 * * *")
    assert body["timezone"] == "Pacific/Auckland"
    # 07:00 NZDT (UTC+13) on 2026-03-03 is 18:00 UTC the day before.
    assert body["next_run_at"] == "2026-03-02T18:00:00Z"
    assert body["next_run_at_local"] == "2026-03-03T07:00:00+13:00"
    utc_user = await create(client, admin, cron_expression="@hourly")
    assert utc_user["timezone"] == "UTC"
    # The first occurrence at or after now: this very instant.
    assert utc_user["next_run_at_local"] == "2026-03-02T12:00:00Z"


async def test_one_off_and_interval_timings(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    one_off = await create(client, alice, run_at="2026-03-05T08:30:00", timezone="Asia/Tokyo")
    # A time without an offset is read on the schedule's wall clock.
    assert one_off["run_at"] == "2026-03-04T23:30:00Z"
    assert one_off["next_run_at"] == "2026-03-04T23:30:00Z"
    assert one_off["next_run_at_local"] == "2026-03-05T08:30:00+09:00"
    every = await create(client, alice, interval_seconds=900)
    assert every["start_at"] == "2026-03-02T12:15:00Z"
    assert every["next_run_at"] == "2026-03-02T12:15:00Z"
    anchored = await create(client, alice, interval_seconds=3600, start_at="2026-03-02T12:20:00Z")
    assert anchored["next_run_at"] == "2026-03-02T12:20:00Z"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron_expression": "61 * * * *"}, "cron_expression"),
        ({"cron_expression": "0 0 * * * *"}, "cron_expression"),
        ({"cron_expression": "@fortnightly"}, "cron_expression"),
        ({"cron_expression": "0 9 * * *", "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"cron_expression": "0 9 * * *", "timezone": ""}, "timezone"),
        ({}, "cron_expression"),
        ({"cron_expression": "0 9 * * *", "interval_seconds": 60}, "interval_seconds"),
        ({"interval_seconds": 10}, "interval_seconds"),
        ({"run_at": "2026-03-01T00:00:00Z"}, "run_at"),
        ({"run_at": "not a time"}, "run_at"),
        ({"cron_expression": "@daily", "start_at": "2026-03-03T00:00:00Z"}, "start_at"),
        ({"cron_expression": "@daily", "task": None}, "task"),
        ({"cron_expression": "@daily", "task": {"context": {}}}, "task"),
        ({"cron_expression": "@daily", "task": {"commands": []}}, "task.commands"),
        ({"cron_expression": "@daily", "task_query": "x", "task": {"query": "y"}}, "task_query"),
        ({"cron_expression": "@daily", "catchup": "sometimes"}, "catchup"),
        ({"cron_expression": "@daily", "overlap": "queue"}, "overlap"),
        (
            {"cron_expression": "@daily", "overlap": "skip", "max_concurrent_runs": 3},
            "max_concurrent_runs",
        ),
        ({"interval_seconds": 120, "jitter_seconds": 120}, "jitter_seconds"),
        ({"cron_expression": "@daily", "input": {"a": 1}}, "input"),
        ({"cron_expression": "@daily", "colour": "blue"}, "colour"),
    ],
)
async def test_invalid_definitions_name_the_field(
    client: httpx.AsyncClient, alice: User, clock: ManualClock, body: dict[str, Any], field: str
) -> None:
    body = {"name": "bad", "task": {"commands": ["true"]}, **body}
    if body.get("task") is None:
        body.pop("task")
    response = await client.post("/api/v1/schedules", json=body, headers=alice.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in {d["field"] for d in error["details"]}, error


async def test_workflow_targets_are_checked(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    response = await client.post(
        "/api/v1/schedules",
        json={
            "name": "wf",
            "cron_expression": "@daily",
            "workflow_id": "0190b0c4-0000-7000-8000-000000000000",
            "input": {"x": 1},
        },
        headers=alice.headers,
    )
    assert response.status_code == 400, response.text
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "workflow_id"
    assert detail["message"] in ("workflows are not available", "no such workflow")


async def test_limits_per_user(app_factory: AppFactory) -> None:
    async with app_factory(
        scheduler={"max_schedules_per_user": 2, "min_interval_seconds": 300}
    ) as (app, client):
        from taskgate.identity.user_service import ensure_first_admin

        async with app.state.db.transaction() as session:
            await ensure_first_admin(session, ADMIN_PASSWORD)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        user = await create_user(client, admin, "carol")
        response = await client.post(
            "/api/v1/schedules",
            json={"name": "fast", "interval_seconds": 120, "task": {"commands": ["true"]}},
            headers=user.headers,
        )
        assert response.status_code == 400
        assert response.json()["error"]["details"][0]["field"] == "interval_seconds"
        response = await client.post(
            "/api/v1/schedules",
            json={"name": "fast", "cron_expression": "*/2 * * * *", "task": {"commands": ["t"]}},
            headers=user.headers,
        )
        assert response.status_code == 400
        assert response.json()["error"]["details"][0]["field"] == "cron_expression"
        first = await create(client, user, interval_seconds=300)
        await create(client, user, cron_expression="@hourly")
        response = await client.post(
            "/api/v1/schedules",
            json={"name": "third", "cron_expression": "@daily", "task": {"commands": ["t"]}},
            headers=user.headers,
        )
        assert response.status_code == 409
        assert "limit is 2" in response.json()["error"]["message"]
        deleted = await client.delete(f"/api/v1/schedules/{first['id']}", headers=user.headers)
        assert deleted.status_code == 204
        await create(client, user, cron_expression="@daily")


async def test_another_users_schedule_is_not_found(
    client: httpx.AsyncClient, alice: User, bob: User, clock: ManualClock
) -> None:
    mine = await create(client, alice, cron_expression="@daily")
    path = f"/api/v1/schedules/{mine['id']}"
    assert (await client.get(path, headers=bob.headers)).status_code == 404
    assert (await client.patch(path, json={"name": "x"}, headers=bob.headers)).status_code == 404
    assert (await client.delete(path, headers=bob.headers)).status_code == 404
    for verb in ("pause", "resume", "trigger", "skip-next", "runs"):
        method = client.get if verb == "runs" else client.post
        assert (await method(f"{path}/{verb}", headers=bob.headers)).status_code == 404
    listed = await client.get("/api/v1/schedules", headers=bob.headers)
    assert listed.json()["results"] == []


async def test_patch_changes_only_what_is_sent_and_checks_the_version(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    created = await create(
        client, alice, cron_expression="0 6 * * *", timezone="Europe/Paris", description="d"
    )
    path = f"/api/v1/schedules/{created['id']}"
    response = await client.patch(
        path, json={"name": "renamed"}, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert response.status_code == 200, response.text
    renamed = response.json()
    assert response.headers["etag"] == '"2"'
    assert renamed["name"] == "renamed"
    assert renamed["description"] == "d"
    assert renamed["next_run_at"] == created["next_run_at"]
    stale = await client.patch(
        path, json={"name": "again"}, headers={**alice.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "PRECONDITION_FAILED"
    # A new timing replaces the old one and counts from now.
    switched = await client.patch(path, json={"interval_seconds": 3600}, headers=alice.headers)
    assert switched.status_code == 200, switched.text
    body = switched.json()
    assert body["cron_expression"] is None
    assert body["interval_seconds"] == 3600
    assert body["next_run_at"] == "2026-03-02T13:00:00Z"
    assert body["next_run_at_local"] == "2026-03-02T14:00:00+01:00"
    moved = await client.patch(path, json={"timezone": "Asia/Kolkata"}, headers=alice.headers)
    assert moved.json()["next_run_at_local"] == "2026-03-02T18:30:00+05:30"
    bad = await client.patch(path, json={"timezone": "Nowhere/Else"}, headers=alice.headers)
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "timezone"
    assert (await get(client, alice, created["id"]))["timezone"] == "Asia/Kolkata"


async def test_pause_and_resume(client: httpx.AsyncClient, alice: User, clock: ManualClock) -> None:
    created = await create(client, alice, cron_expression="0 * * * *")
    paused = await client.post(
        f"/api/v1/schedules/{created['id']}/pause",
        json={"reason": "maintenance"},
        headers=alice.headers,
    )
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert body["status"] == "PAUSED"
    assert body["enabled"] is False
    assert body["pause_reason"] == "maintenance"
    assert body["next_run_at"] is None
    await action(client, alice, created["id"], "pause", status=409)
    clock.advance(hours=5, minutes=10)
    resumed = await action(client, alice, created["id"], "resume")
    assert resumed["status"] == "ACTIVE"
    assert resumed["pause_reason"] is None
    # Counting restarts from now: the hours spent paused are not owed.
    assert resumed["next_run_at"] == "2026-03-02T18:00:00Z"
    await action(client, alice, created["id"], "resume", status=409)
    # PATCH enabled is the same switch.
    response = await client.patch(
        f"/api/v1/schedules/{created['id']}", json={"enabled": False}, headers=alice.headers
    )
    assert response.json()["status"] == "PAUSED"
    disabled = await create(client, alice, cron_expression="@daily", enabled=False)
    assert disabled["status"] == "PAUSED"
    assert disabled["next_run_at"] is None


async def test_skip_next_cancels_only_the_next_occurrence(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    created = await create(client, alice, cron_expression="0 18 * * *", timezone="UTC")
    assert created["next_run_at"] == "2026-03-02T18:00:00Z"
    body = await action(client, alice, created["id"], "skip-next")
    assert body["skipped"]["scheduled_for"] == "2026-03-02T18:00:00Z"
    assert body["skipped"]["status"] == "skipped"
    assert body["skipped"]["reason"] == "skip-next"
    assert body["schedule"]["next_run_at"] == "2026-03-03T18:00:00Z"
    history = await runs(client, alice, created["id"])
    assert [(r["scheduled_for"], r["reason"]) for r in history] == [
        ("2026-03-02T18:00:00Z", "skip-next")
    ]
    one_off = await create(client, alice, run_at="2026-03-10T00:00:00Z")
    done = await action(client, alice, one_off["id"], "skip-next")
    assert done["schedule"]["status"] == "COMPLETED"
    await action(client, alice, one_off["id"], "skip-next", status=409)


async def test_trigger_runs_now_as_a_manual_fire_even_when_paused(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    created = await create(
        client, alice, cron_expression="@daily", task={"commands": ["echo hi"], "labels": ["ops"]}
    )
    await action(client, alice, created["id"], "pause")
    run = await action(client, alice, created["id"], "trigger", status=202)
    assert run["trigger"] == "manual"
    assert run["status"] == "fired"
    assert run["scheduled_for"] == "2026-03-02T12:00:00Z"
    assert run["delay_ms"] == 0
    task = (await client.get(f"/api/v1/tasks/{run['task_id']}", headers=alice.headers)).json()
    assert task["status"] == "QUEUED"
    assert task["input"] == {"commands": ["echo hi"]}
    assert task["labels"] == ["ops", f"schedule:{created['id']}"]
    again = await action(client, alice, created["id"], "trigger", status=202)
    assert again["task_id"] != run["task_id"]
    history = await runs(client, alice, created["id"])
    assert [r["task_id"] for r in history] == [run["task_id"], again["task_id"]]
    assert all(r["outcome"] == "QUEUED" for r in history)
    assert (await get(client, alice, created["id"]))["total_runs"] == 2
    cancelled = await client.post(f"/api/v1/tasks/{run['task_id']}/cancel", headers=alice.headers)
    assert cancelled.status_code == 202, cancelled.text
    history = await runs(client, alice, created["id"])
    assert [r["outcome"] for r in history] == ["CANCELLED", "QUEUED"]


async def test_history_pages_and_filters(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    created = await create(client, alice, cron_expression="@daily")
    for _ in range(3):
        await action(client, alice, created["id"], "trigger", status=202)
        clock.advance(minutes=1)
    await action(client, alice, created["id"], "skip-next")
    path = f"/api/v1/schedules/{created['id']}/runs"
    first = (await client.get(f"{path}?limit=2", headers=alice.headers)).json()
    assert len(first["results"]) == 2
    assert first["next"]
    # Newest first by default: the skipped occurrence is tomorrow's.
    assert first["results"][0]["status"] == "skipped"
    rest = (await client.get(first["next"], headers=alice.headers)).json()
    assert len(rest["results"]) == 2
    assert rest["next"] is None
    only_fired = (await client.get(f"{path}?status=fired", headers=alice.headers)).json()
    assert len(only_fired["results"]) == 3
    assert (await client.get(f"{path}?status=odd", headers=alice.headers)).status_code == 400


async def test_delete_removes_the_schedule_but_not_its_tasks(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    created = await create(client, alice, cron_expression="@daily")
    run = await action(client, alice, created["id"], "trigger", status=202)
    path = f"/api/v1/schedules/{created['id']}"
    assert (
        await client.delete(path, headers={**alice.headers, "If-Match": '"7"'})
    ).status_code == 412
    assert (await client.delete(path, headers=alice.headers)).status_code == 204
    assert (await client.get(path, headers=alice.headers)).status_code == 404
    task = await client.get(f"/api/v1/tasks/{run['task_id']}", headers=alice.headers)
    assert task.status_code == 200


async def test_completed_one_off_revives_with_a_new_time(
    client: httpx.AsyncClient, alice: User, clock: ManualClock
) -> None:
    created = await create(client, alice, run_at="2026-03-02T13:00:00Z")
    await action(client, alice, created["id"], "skip-next")
    assert (await get(client, alice, created["id"]))["status"] == "COMPLETED"
    clock.advance(timedelta(hours=2).total_seconds())
    response = await client.patch(
        f"/api/v1/schedules/{created['id']}",
        json={"run_at": "2026-03-03T00:00:00Z"},
        headers=alice.headers,
    )
    body = response.json()
    assert body["status"] == "ACTIVE"
    assert body["next_run_at"] == "2026-03-03T00:00:00Z"
    assert at(body["next_run_at"]) > START


async def test_queue_overview_shows_schedules(client: httpx.AsyncClient, alice: User) -> None:
    daily = await create(client, alice, cron_expression="@daily")
    await create(client, alice, cron_expression="@hourly", enabled=False)
    response = await client.get("/api/v1/queue", headers=alice.headers)
    assert response.status_code == 200, response.text
    schedules = response.json()["schedules"]
    assert schedules["by_state"] == {"ACTIVE": 1, "PAUSED": 1}
    assert schedules["due_now"] == 0
    assert schedules["next_due_at"] == daily["next_run_at"]
    assert schedules["next_due_schedule_id"] == daily["id"]
