"""The seam applied to schedules: every role of a project reads them all, a member changes
what it made, an operator pauses, resumes and triggers anyone's, an admin changes anyone's;
targets stay in the schedule's project; a disabled project's schedules are read-only and
their occurrences are skipped, not fired."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from taskgate.db.session import Database
from taskgate.models import ScheduleRun
from taskgate.schedules.clock import ManualClock
from taskgate.schedules.scheduler import Scheduler
from tests.governance.support import Team, assert_error, project, team
from tests.identity.api import create_key
from tests.schedules.flows import COMMANDS, at, tasks_of
from tests.support.clients import User

GRAPH = {"nodes": [{"id": "say", "type": "log", "config": {"message": "hi"}}], "edges": []}


async def _schedule(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    body = {"name": "hourly", "cron_expression": "@hourly", **body}
    if "workflow_id" not in body:
        body["task"] = COMMANDS
    response = await client.post("/api/v1/schedules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _workflow(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = {"name": "Greeter", "graph": GRAPH}
    response = await client.post("/api/v1/workflows", json=body, headers=headers)
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


def _post(client: httpx.AsyncClient, user: User, schedule_id: str, verb: str) -> Any:
    return client.post(f"/api/v1/schedules/{schedule_id}/{verb}", headers=user.headers)


async def _studio(client: httpx.AsyncClient, admin: User) -> tuple[Team, str]:
    studio = await team(client, admin)
    made = await _schedule(client, studio.headers(studio.member))
    return studio, made["id"]


async def test_roles_decide_who_reads_changes_and_controls_a_schedule(
    client: httpx.AsyncClient, admin: User, clock: ManualClock
) -> None:
    studio, schedule_id = await _studio(client, admin)
    url = f"/api/v1/schedules/{schedule_id}"

    viewer = studio.viewer
    assert (await client.get(url, headers=viewer.headers)).status_code == 200
    assert (await client.get(f"{url}/runs", headers=viewer.headers)).status_code == 200
    listed = await client.get("/api/v1/schedules", headers=studio.headers(viewer))
    assert [s["id"] for s in listed.json()["results"]] == [schedule_id]
    refused = await client.post(
        "/api/v1/schedules",
        json={"name": "n", "cron_expression": "@daily", "task": COMMANDS},
        headers=studio.headers(viewer),
    )
    assert_error(refused, 403, "FORBIDDEN", "schedule:create")
    for verb in ("pause", "trigger", "skip-next"):
        response = await _post(client, viewer, schedule_id, verb)
        assert response.status_code == 403, (verb, response.text)

    other = studio.other_member
    changed = await client.patch(url, json={"name": "mine"}, headers=other.headers)
    assert_error(changed, 403, "FORBIDDEN", "schedule:update", "what you created")
    paused = await _post(client, other, schedule_id, "pause")
    assert_error(paused, 403, "FORBIDDEN", "schedule:pause")

    operator = studio.operator
    assert (await _post(client, operator, schedule_id, "pause")).status_code == 200
    assert (await _post(client, operator, schedule_id, "resume")).status_code == 200
    triggered = await _post(client, operator, schedule_id, "trigger")
    assert triggered.status_code == 202, triggered.text
    # The run starts as the schedule's firings do: the owner's task, in the studio.
    task_id = triggered.json()["task_id"]
    task = await client.get(f"/api/v1/tasks/{task_id}", headers=studio.member.headers)
    assert task.status_code == 200, task.text
    not_operators = await client.patch(url, json={"name": "x"}, headers=operator.headers)
    assert_error(not_operators, 403, "FORBIDDEN", "schedule:update")

    renamed = await client.patch(url, json={"name": "by admin"}, headers=studio.admin.headers)
    assert (renamed.status_code, renamed.json()["name"]) == (200, "by admin")
    deleted = await client.delete(url, headers=studio.admin.headers)
    assert deleted.status_code == 204


async def test_another_project_sees_nothing_and_targets_stay_in_the_project(
    client: httpx.AsyncClient, admin: User, clock: ManualClock
) -> None:
    studio, schedule_id = await _studio(client, admin)
    outsider = studio.outsider
    for method, path in (
        ("GET", f"/api/v1/schedules/{schedule_id}"),
        ("GET", f"/api/v1/schedules/{schedule_id}/runs"),
        ("PATCH", f"/api/v1/schedules/{schedule_id}"),
        ("DELETE", f"/api/v1/schedules/{schedule_id}"),
        ("POST", f"/api/v1/schedules/{schedule_id}/pause"),
        ("POST", f"/api/v1/schedules/{schedule_id}/trigger"),
    ):
        json = {"name": "x"} if method == "PATCH" else None
        response = await client.request(method, path, json=json, headers=outsider.headers)
        assert_error(response, 404, "NOT_FOUND", "Schedule not found")
    smuggled = await client.post(
        "/api/v1/schedules",
        params={"project_id": studio.project_id},
        json={"name": "n", "cron_expression": "@daily", "task": COMMANDS},
        headers=outsider.headers,
    )
    assert_error(smuggled, 404, "NOT_FOUND", "No such project")
    own = await client.get("/api/v1/schedules", headers=outsider.headers)
    assert own.json()["results"] == []

    # A workflow of the studio is no target for the outsider, and a workflow of another
    # project is none for a studio schedule, even one its author may run there.
    studio_workflow = await _workflow(client, studio.headers(studio.member))
    elsewhere = await _workflow(client, studio.member.headers)
    for headers, workflow_id, message in (
        (outsider.headers, studio_workflow, "no such workflow"),
        (studio.headers(studio.member), elsewhere, "no such workflow in this project"),
    ):
        body = {"name": "wf", "cron_expression": "@daily", "workflow_id": workflow_id}
        response = await client.post("/api/v1/schedules", json=body, headers=headers)
        assert_error(response, 400, "VALIDATION_ERROR", "workflow_id")
        assert response.json()["error"]["details"][0]["message"] == message
    targeted = await _schedule(client, studio.headers(studio.member), workflow_id=studio_workflow)
    moved = await client.patch(
        f"/api/v1/schedules/{targeted['id']}",
        json={"workflow_id": elsewhere},
        headers=studio.member.headers,
    )
    assert_error(moved, 400, "VALIDATION_ERROR", "workflow_id")

    # Keys: one of another project finds nothing; one that may only read changes nothing.
    member = studio.member
    other_project = await project(client, member, "Elsewhere")
    key = (await create_key(client, member.headers, project_id=other_project))["key"]
    hidden = await client.get(f"/api/v1/schedules/{schedule_id}", headers={"X-API-Key": key})
    assert hidden.status_code == 404
    reader = (await create_key(client, member.headers, scopes=["schedules:read"]))["key"]
    headers = {"X-API-Key": reader, "X-Tenant-ID": studio.project_id}
    read = await client.get(f"/api/v1/schedules/{schedule_id}", headers=headers)
    assert read.status_code == 200
    pause = await client.post(f"/api/v1/schedules/{schedule_id}/pause", headers=headers)
    assert_error(pause, 403, "FORBIDDEN", "schedules:write")


async def test_a_disabled_projects_schedules_are_read_only_and_skip_their_occurrences(
    client: httpx.AsyncClient,
    app: FastAPI,
    admin: User,
    clock: ManualClock,
    scheduler: Scheduler,
) -> None:
    studio, schedule_id = await _studio(client, admin)
    response = await client.post(
        f"/api/v1/projects/{studio.project_id}/disable", headers=studio.owner.headers
    )
    assert response.status_code == 200, response.text

    url = f"/api/v1/schedules/{schedule_id}"
    member = studio.member
    assert (await client.get(url, headers=member.headers)).status_code == 200
    for method, path in (
        ("PATCH", url),
        ("POST", f"{url}/pause"),
        ("POST", f"{url}/trigger"),
        ("POST", f"{url}/skip-next"),
        ("DELETE", url),
    ):
        json = {"name": "x"} if method == "PATCH" else None
        response = await client.request(method, path, json=json, headers=member.headers)
        assert_error(response, 409, "CONFLICT", "disabled")

    before = (await client.get(url, headers=member.headers)).json()["next_run_at"]
    clock.set(at(before))
    tally = await scheduler.tick()
    assert (tally.fired, tally.skipped) == (0, 1)
    db: Database = app.state.db
    async with db.transaction(write=False) as session:
        [row] = (await session.scalars(select(ScheduleRun))).all()
    assert (row.status, row.reason, row.task_id) == ("skipped", "project_disabled", None)
    assert await tasks_of(app, schedule_id) == []
    after = (await client.get(url, headers=member.headers)).json()
    assert after["next_run_at"] != before
    # Nothing is left due: the next tick finds nothing to do, rather than retrying.
    assert (await scheduler.tick()).skipped == 0
