"""The seam applied to the audit log and the queue overview: a project's admins read its
audit records and nobody else's; the queue shows a project's work to whoever reads its tasks."""

from __future__ import annotations

import httpx

from tests.governance.support import assert_error, denial, submit, team
from tests.identity.api import create_key
from tests.support.clients import User


async def _records(client: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, object]]:
    response = await client.get("/api/v1/audit", params={"limit": "100"}, headers=headers)
    assert response.status_code == 200, response.text
    results: list[dict[str, object]] = response.json()["results"]
    return results


async def test_a_project_admin_reads_the_projects_records_only(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    task_id = await submit(client, studio.headers(studio.member))
    await submit(client, studio.outsider.headers)  # in the outsider's own project

    records = await _records(client, studio.headers(studio.admin))
    created = [r["resource_id"] for r in records if r["action"] == "task.create"]
    assert created == [task_id]
    assert {r["project_id"] for r in records} == {studio.project_id}

    # The instance administrator reads everything, or one project's when it names it.
    everything = await _records(client, admin.headers)
    assert len([r for r in everything if r["action"] == "task.create"]) == 2
    narrowed = await _records(client, studio.headers(admin))
    assert {r["project_id"] for r in narrowed} == {studio.project_id}


async def test_viewers_and_strangers_read_no_audit_records(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    for user in (studio.viewer, studio.member, studio.operator):
        refused = await client.get("/api/v1/audit", headers=studio.headers(user))
        assert_error(refused, 403, "FORBIDDEN", "audit:read")
    record = await denial(client, admin, studio.viewer, "audit:read")
    assert record["project_id"] == studio.project_id
    hidden = await client.get("/api/v1/audit", headers=studio.headers(studio.outsider))
    assert_error(hidden, 404, "NOT_FOUND", "No such project")
    queried = await client.get(
        "/api/v1/audit",
        params={"project_id": studio.project_id},
        headers=studio.outsider.headers,
    )
    assert_error(queried, 404, "NOT_FOUND", "No such project")


async def test_the_queue_shows_a_projects_work_to_its_readers(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    await submit(client, studio.headers(studio.member))

    viewer = await client.get("/api/v1/queue", headers=studio.headers(studio.viewer))
    assert viewer.status_code == 200, viewer.text
    project = viewer.json()["project"]
    assert (project["project_id"], project["tasks_by_status"]) == (
        studio.project_id,
        {"QUEUED": 1},
    )
    assert viewer.json()["workers"] is None
    hidden = await client.get("/api/v1/queue", headers=studio.headers(studio.outsider))
    assert_error(hidden, 404, "NOT_FOUND", "No such project")

    # A key that may not read tasks still sees how long work waits, not the project's work.
    key = await create_key(client, studio.viewer.headers, scopes=["approvals:read"])
    counts = await client.get(
        "/api/v1/queue", headers={"X-API-Key": key["key"], "X-Tenant-ID": studio.project_id}
    )
    assert counts.status_code == 200, counts.text
    assert (counts.json()["project"], counts.json()["schedules"]) == (None, None)
    assert counts.json()["depth"]["queued"] >= 1
