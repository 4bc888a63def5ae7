"""The seam applied to workflows and their executions: every role of a project reads them
all, a member changes what it made, an operator controls anyone's runs, an admin changes
anyone's workflow; another project's user or key finds nothing, a read-scope key changes
nothing, and a disabled project is read-only."""

from __future__ import annotations

from typing import Any

import httpx

from tests.governance.support import Team, assert_error, denial, project, team
from tests.identity.api import create_key
from tests.support.clients import User

GRAPH = {"nodes": [{"id": "say", "type": "log", "config": {"message": "hi"}}], "edges": []}


async def _workflow(
    client: httpx.AsyncClient, headers: dict[str, str], **extra: Any
) -> dict[str, Any]:
    body = {"name": "Greeter", "graph": GRAPH, **extra}
    response = await client.post("/api/v1/workflows", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _run(client: httpx.AsyncClient, headers: dict[str, str], workflow_id: str) -> str:
    response = await client.post(f"/api/v1/workflows/{workflow_id}/run", headers=headers)
    assert response.status_code == 202, response.text
    execution_id: str = response.json()["execution_id"]
    return execution_id


async def _ids(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[str]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["results"]]


async def _setup(client: httpx.AsyncClient, admin: User) -> tuple[Team, str, str]:
    """The studio, a workflow its member made, and one execution of it (queued: no worker)."""
    studio = await team(client, admin)
    workflow = await _workflow(client, studio.headers(studio.member))
    execution_id = await _run(client, studio.headers(studio.member), workflow["id"])
    return studio, workflow["id"], execution_id


async def test_a_viewer_reads_everyones_workflows_and_executions_and_changes_nothing(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio, workflow_id, execution_id = await _setup(client, admin)
    viewer = studio.headers(studio.viewer)

    for path in (
        f"/api/v1/workflows/{workflow_id}",
        f"/api/v1/workflows/{workflow_id}/versions",
        f"/api/v1/workflows/{workflow_id}/versions/1",
        f"/api/v1/executions/{execution_id}",
    ):
        response = await client.get(path, headers=studio.viewer.headers)
        assert response.status_code == 200, (path, response.text)
    assert await _ids(client, "/api/v1/workflows", viewer) == [workflow_id]
    assert await _ids(client, "/api/v1/executions", viewer) == [execution_id]

    body = {"name": "Mine", "graph": GRAPH}
    for (method, path, json), permission in (
        (("POST", "/api/v1/workflows", body), "workflow:create"),
        (("PATCH", f"/api/v1/workflows/{workflow_id}", {"name": "x"}), "workflow:update"),
        (("DELETE", f"/api/v1/workflows/{workflow_id}", None), "workflow:delete"),
        (("POST", f"/api/v1/workflows/{workflow_id}/run", None), "workflow:run"),
        (("POST", f"/api/v1/executions/{execution_id}/cancel", None), "execution:cancel"),
    ):
        response = await client.request(method, path, json=json, headers=viewer)
        assert_error(response, 403, "FORBIDDEN", permission)

    record = await denial(client, admin, studio.viewer, "workflow:update")
    assert (record["resource_type"], record["resource_id"]) == ("workflow", workflow_id)
    assert record["subject"]["role_names"] == ["viewer"]


async def test_members_change_their_own_operators_control_runs_admins_change_anything(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio, workflow_id, execution_id = await _setup(client, admin)
    url = f"/api/v1/workflows/{workflow_id}"
    other = studio.other_member.headers

    refused = await client.patch(url, json={"name": "Mine now"}, headers=other)
    assert_error(refused, 403, "FORBIDDEN", "workflow:update", "what you created")
    # Any member runs any workflow of the project, and controls only its own runs.
    theirs = await _run(client, other, workflow_id)
    cancel = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=other)
    assert_error(cancel, 403, "FORBIDDEN", "execution:cancel")
    own = await client.post(f"/api/v1/executions/{theirs}/cancel", headers=other)
    assert own.status_code == 202, own.text

    operator = studio.operator.headers
    cancelled = await client.post(f"/api/v1/executions/{execution_id}/cancel", headers=operator)
    assert cancelled.status_code == 202, cancelled.text
    replayed = await client.post(f"/api/v1/executions/{execution_id}/replay", headers=operator)
    assert replayed.status_code == 202, replayed.text
    not_operators = await client.patch(url, json={"name": "x"}, headers=operator)
    assert_error(not_operators, 403, "FORBIDDEN", "workflow:update")

    renamed = await client.patch(url, json={"name": "Renamed"}, headers=studio.admin.headers)
    assert (renamed.status_code, renamed.json()["name"]) == (200, "Renamed")
    mine = await client.patch(url, json={"enabled": False}, headers=studio.member.headers)
    assert mine.status_code == 200, mine.text
    gone = await client.delete(url, headers=studio.admin.headers)
    assert gone.status_code == 204
    # The executions stay readable to the project.
    kept = await client.get(f"/api/v1/executions/{execution_id}", headers=studio.viewer.headers)
    assert kept.json()["status"] == "CANCELLED"


async def test_a_copy_carries_secrets_only_for_whoever_may_change_the_original(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    source = await _workflow(
        client, studio.headers(studio.member), name="Deploy", secrets={"TOKEN": "s3cret"}
    )
    duplicate = f"/api/v1/workflows/{source['id']}/duplicate"

    # Named by its id, the source's project is where the copy goes, whatever the request's.
    by_other = await client.post(duplicate, headers=studio.other_member.headers)
    assert by_other.status_code == 201, by_other.text
    assert by_other.json()["secret_names"] == []
    by_author = await client.post(duplicate, headers=studio.member.headers)
    assert by_author.json()["secret_names"] == ["TOKEN"]
    listed = await _ids(client, "/api/v1/workflows", studio.headers(studio.viewer))
    assert {by_other.json()["id"], by_author.json()["id"]} <= set(listed)
    by_viewer = await client.post(duplicate, headers=studio.viewer.headers)
    assert_error(by_viewer, 403, "FORBIDDEN", "workflow:create")


async def test_another_projects_user_or_key_finds_nothing_and_a_read_key_changes_nothing(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio, workflow_id, execution_id = await _setup(client, admin)
    outsider = studio.outsider.headers
    for method, path in (
        ("GET", f"/api/v1/workflows/{workflow_id}"),
        ("PATCH", f"/api/v1/workflows/{workflow_id}"),
        ("POST", f"/api/v1/workflows/{workflow_id}/run"),
        ("POST", f"/api/v1/workflows/{workflow_id}/duplicate"),
        ("GET", f"/api/v1/executions/{execution_id}"),
        ("POST", f"/api/v1/executions/{execution_id}/cancel"),
        ("POST", f"/api/v1/executions/{execution_id}/replay"),
    ):
        json = {"name": "x"} if method == "PATCH" else None
        response = await client.request(method, path, json=json, headers=outsider)
        assert response.status_code == 404, (method, path, response.text)
    for path in ("/api/v1/workflows", "/api/v1/executions"):
        named = await client.get(path, headers=studio.headers(studio.outsider))
        assert_error(named, 404, "NOT_FOUND", "No such project")
        smuggled = await client.get(
            path, params={"project_id": studio.project_id}, headers=outsider
        )
        assert_error(smuggled, 404, "NOT_FOUND", "No such project")
        assert await _ids(client, path, outsider) == []

    # A key of the member's own (default) project sees nothing of the studio.
    member = studio.member
    elsewhere = await project(client, member, "Elsewhere")
    other_key = (await create_key(client, member.headers, project_id=elsewhere))["key"]
    hidden = await client.get(f"/api/v1/workflows/{workflow_id}", headers={"X-API-Key": other_key})
    assert hidden.status_code == 404
    # A key that may only read reads, and changes nothing.
    scopes = ["workflows:read", "executions:read"]
    read_key = (await create_key(client, member.headers, scopes=scopes))["key"]
    reader = {"X-API-Key": read_key, "X-Tenant-ID": studio.project_id}
    assert (await client.get(f"/api/v1/workflows/{workflow_id}", headers=reader)).status_code == 200
    for method, path in (
        ("PATCH", f"/api/v1/workflows/{workflow_id}"),
        ("POST", f"/api/v1/workflows/{workflow_id}/run"),
        ("POST", f"/api/v1/executions/{execution_id}/cancel"),
    ):
        json = {"name": "x"} if method == "PATCH" else None
        response = await client.request(method, path, json=json, headers=reader)
        assert_error(response, 403, "FORBIDDEN", "scope")


async def test_a_disabled_projects_workflows_stay_readable_and_refuse_every_change(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio, workflow_id, execution_id = await _setup(client, admin)
    disabled = await client.post(
        f"/api/v1/projects/{studio.project_id}/disable", headers=studio.owner.headers
    )
    assert disabled.status_code == 200, disabled.text

    member = studio.member.headers
    for path in (f"/api/v1/workflows/{workflow_id}", f"/api/v1/executions/{execution_id}"):
        assert (await client.get(path, headers=member)).status_code == 200
    body = {"name": "New", "graph": GRAPH}
    for method, path, json in (
        ("POST", "/api/v1/workflows", body),
        ("PATCH", f"/api/v1/workflows/{workflow_id}", {"name": "x"}),
        ("POST", f"/api/v1/workflows/{workflow_id}/run", None),
        ("POST", f"/api/v1/workflows/{workflow_id}/duplicate", None),
        ("POST", f"/api/v1/executions/{execution_id}/cancel", None),
        ("DELETE", f"/api/v1/workflows/{workflow_id}", None),
    ):
        response = await client.request(
            method, path, json=json, headers={**member, "X-Tenant-ID": studio.project_id}
        )
        assert_error(response, 409, "CONFLICT", "disabled")
    viewer = await client.post(
        f"/api/v1/workflows/{workflow_id}/run", headers=studio.viewer.headers
    )
    assert viewer.status_code == 403
