"""The seam applied to runs and jobs: a project's runs are read by all who see the project,
changed by their reporter (or an admin), and invisible to everyone else."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from taskgate.db.session import Database
from taskgate.models import Task, TaskJob
from tests.governance.support import Team, assert_error, denial, submit, team
from tests.identity.api import create_key
from tests.support.clients import User

LOG = {"entries": [{"message": "step one"}]}


async def report_run(client: httpx.AsyncClient, headers: dict[str, str], **body: str) -> str:
    response = await client.post("/api/v1/runs", json={"name": "etl", **body}, headers=headers)
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


async def dispatch_job(app: FastAPI, task_id: str) -> str:
    """A job of the task, as a worker records it."""
    db: Database = app.state.db
    async with db.transaction() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        job = TaskJob(
            owner_id=task.owner_id,
            project_id=task.project_id,
            task_id=task.id,
            kind="commands",
            status="SUCCEEDED",
        )
        session.add(job)
        await session.flush()
        return str(job.id)


async def _ids(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[str]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["results"]]


async def test_a_viewer_reads_every_run_and_job_of_the_project(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    studio = await team(client, admin)
    run_id = await report_run(client, studio.headers(studio.member))
    task_id = await submit(client, studio.headers(studio.member))
    job_id = await dispatch_job(app, task_id)
    # The viewer's own project holds a run of its own, which the studio's lists never show.
    own = await report_run(client, studio.viewer.headers)

    viewer = studio.viewer
    for path in (f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/logs", f"/api/v1/jobs/{job_id}"):
        response = await client.get(path, headers=viewer.headers)
        assert response.status_code == 200, (path, response.text)
    assert await _ids(client, "/api/v1/runs", studio.headers(viewer)) == [run_id]
    assert await _ids(client, "/api/v1/jobs", studio.headers(viewer)) == [job_id]
    assert await _ids(client, "/api/v1/runs", viewer.headers) == [own]
    assert await _ids(client, "/api/v1/jobs", viewer.headers) == []

    refused = await client.post(
        "/api/v1/runs", json={"name": "mine"}, headers=studio.headers(viewer)
    )
    assert_error(refused, 403, "FORBIDDEN", "run:create")
    logs = await client.post(f"/api/v1/runs/{run_id}/logs", json=LOG, headers=viewer.headers)
    assert_error(logs, 403, "FORBIDDEN", "run:update")
    record = await denial(client, admin, viewer, "run:update")
    assert (record["resource_id"], record["subject"]["role_names"]) == (run_id, ["viewer"])


async def test_a_member_appends_to_its_own_runs_and_an_admin_to_anyones(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    mine = await report_run(client, studio.headers(studio.member))
    theirs = await report_run(client, studio.headers(studio.other_member))

    appended = await client.post(
        f"/api/v1/runs/{mine}/logs", json=LOG, headers=studio.member.headers
    )
    assert appended.status_code == 201, appended.text
    refused = await client.post(
        f"/api/v1/runs/{theirs}/logs", json=LOG, headers=studio.member.headers
    )
    assert_error(refused, 403, "FORBIDDEN", "run:update", "what you created")
    by_admin = await client.post(
        f"/api/v1/runs/{theirs}/logs", json=LOG, headers=studio.admin.headers
    )
    assert by_admin.status_code == 201, by_admin.text

    # A run may hang under a teammate's task and run, in the same project only.
    task_id = await submit(client, studio.headers(studio.other_member))
    child = await report_run(
        client, studio.headers(studio.member), task_id=task_id, parent_run_id=theirs
    )
    detail = await client.get(f"/api/v1/runs/{child}", headers=studio.viewer.headers)
    assert (detail.json()["task_id"], detail.json()["parent_run_id"]) == (task_id, theirs)
    elsewhere = await report_run(client, studio.outsider.headers)
    across = await client.post(
        "/api/v1/runs",
        json={"name": "x", "parent_run_id": elsewhere},
        headers=studio.headers(studio.member),
    )
    assert_error(across, 400, "VALIDATION_ERROR", "parent_run_id")


async def test_a_user_of_another_project_finds_nothing(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    studio = await team(client, admin)
    run_id = await report_run(client, studio.headers(studio.member))
    job_id = await dispatch_job(app, await submit(client, studio.headers(studio.member)))
    outsider = studio.outsider

    for method, path, body in (
        ("GET", f"/api/v1/runs/{run_id}", None),
        ("GET", f"/api/v1/runs/{run_id}/logs", None),
        ("POST", f"/api/v1/runs/{run_id}/logs", LOG),
    ):
        response = await client.request(method, path, json=body, headers=outsider.headers)
        assert_error(response, 404, "NOT_FOUND", "Run not found")
    job = await client.get(f"/api/v1/jobs/{job_id}", headers=outsider.headers)
    assert_error(job, 404, "NOT_FOUND", "Job not found")
    # Naming the project, by header or query, widens nothing.
    for path in ("/api/v1/runs", "/api/v1/jobs"):
        named = await client.get(path, headers=studio.headers(outsider))
        assert_error(named, 404, "NOT_FOUND", "No such project")
        queried = await client.get(
            path, params={"project_id": studio.project_id}, headers=outsider.headers
        )
        assert_error(queried, 404, "NOT_FOUND", "No such project")
    created = await client.post(
        "/api/v1/runs",
        params={"project_id": studio.project_id},
        json={"name": "smuggled"},
        headers=outsider.headers,
    )
    assert_error(created, 404, "NOT_FOUND")


async def test_keys_are_held_to_their_scopes_and_project(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    run_id = await report_run(client, studio.headers(studio.member))
    member = studio.member

    reader = (await create_key(client, member.headers, scopes=["tasks:read"]))["key"]
    headers = {"X-API-Key": reader, "X-Tenant-ID": studio.project_id}
    assert (await client.get(f"/api/v1/runs/{run_id}", headers=headers)).status_code == 200
    logs = await client.post(f"/api/v1/runs/{run_id}/logs", json=LOG, headers=headers)
    assert_error(logs, 403, "FORBIDDEN", "tasks:write")
    created = await client.post("/api/v1/runs", json={"name": "x"}, headers=headers)
    assert_error(created, 403, "FORBIDDEN", "tasks:write")

    default = (await client.get("/api/v1/users/me", headers=member.headers)).json()
    own_key = await create_key(client, member.headers, project_id=default["default_project_id"])
    elsewhere = {"X-API-Key": own_key["key"]}
    hidden = await client.get(f"/api/v1/runs/{run_id}", headers=elsewhere)
    assert_error(hidden, 404, "NOT_FOUND", "Run not found")
    listed = await client.get(
        "/api/v1/runs", headers={**elsewhere, "X-Tenant-ID": studio.project_id}
    )
    assert_error(listed, 404, "NOT_FOUND", "No such project")


async def test_a_disabled_project_keeps_its_runs_readable_and_refuses_changes(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    run_id = await report_run(client, studio.headers(studio.member))
    await _disable(client, studio)

    read = await client.get(f"/api/v1/runs/{run_id}", headers=studio.member.headers)
    assert read.status_code == 200
    assert await _ids(client, "/api/v1/runs", studio.headers(studio.member)) == [run_id]
    for response in (
        await client.post(
            "/api/v1/runs", json={"name": "late"}, headers=studio.headers(studio.member)
        ),
        await client.post(f"/api/v1/runs/{run_id}/logs", json=LOG, headers=studio.member.headers),
    ):
        assert_error(response, 409, "CONFLICT", "disabled")


async def _disable(client: httpx.AsyncClient, studio: Team) -> None:
    response = await client.post(
        f"/api/v1/projects/{studio.project_id}/disable", headers=studio.owner.headers
    )
    assert response.status_code == 200, response.text
