"""The seam applied to tasks: what each role may do with the tasks of a project, what a user
of another project sees (nothing), and how each denial is answered and audited."""

from __future__ import annotations

import httpx

from tests.governance.support import Team, assert_error, denial, submit, team
from tests.support.clients import User


async def test_a_viewer_reads_every_task_but_cannot_submit(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    task_id = await submit(client, studio.headers(studio.member))

    read = await client.get(f"/api/v1/tasks/{task_id}", headers=studio.viewer.headers)
    assert read.status_code == 200
    listed = await client.get("/api/v1/tasks", headers=studio.headers(studio.viewer))
    assert [t["task_id"] for t in listed.json()["results"]] == [task_id]

    refused = await client.post(
        "/api/v1/tasks", json={"commands": ["true"]}, headers=studio.headers(studio.viewer)
    )
    assert_error(refused, 403, "FORBIDDEN", "task:create")
    cancel = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=studio.viewer.headers)
    assert_error(cancel, 403, "FORBIDDEN", "task:cancel")


async def test_a_member_controls_its_own_tasks_only(client: httpx.AsyncClient, admin: User) -> None:
    studio = await team(client, admin)
    mine = await submit(client, studio.headers(studio.member))
    theirs = await submit(client, studio.headers(studio.other_member))

    for action in ("pause", "resume", "cancel"):
        response = await client.post(
            f"/api/v1/tasks/{mine}/{action}", headers=studio.member.headers
        )
        assert response.status_code == 202, (action, response.text)
        refused = await client.post(
            f"/api/v1/tasks/{theirs}/{action}", headers=studio.member.headers
        )
        assert_error(refused, 403, "FORBIDDEN", f"task:{action}", "what you created")
    state = await client.get(f"/api/v1/tasks/{theirs}", headers=studio.member.headers)
    assert state.json()["status"] == "QUEUED"


async def test_an_operator_controls_anyones_task(client: httpx.AsyncClient, admin: User) -> None:
    studio = await team(client, admin)
    theirs = await submit(client, studio.headers(studio.member))

    paused = await client.post(f"/api/v1/tasks/{theirs}/pause", headers=studio.operator.headers)
    assert paused.status_code == 202, paused.text
    cancelled = await client.post(
        f"/api/v1/tasks/{theirs}/cancel",
        json={"reason": "on call"},
        headers=studio.operator.headers,
    )
    assert cancelled.status_code == 202, cancelled.text
    state = await client.get(f"/api/v1/tasks/{theirs}/control-state", headers=studio.owner.headers)
    assert (state.json()["is_cancelled"], state.json()["cancelled_by"]) == (True, "oli")


async def test_a_user_of_another_project_finds_nothing(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    task_id = await submit(client, studio.headers(studio.member))
    outsider = studio.outsider

    for method, path in (
        ("GET", f"/api/v1/tasks/{task_id}"),
        ("GET", f"/api/v1/tasks/{task_id}/events"),
        ("POST", f"/api/v1/tasks/{task_id}/cancel"),
    ):
        response = await client.request(method, path, headers=outsider.headers)
        assert_error(response, 404, "NOT_FOUND", "Task not found")
    named = await client.get("/api/v1/tasks", headers=studio.headers(outsider))
    assert_error(named, 404, "NOT_FOUND", "No such project")
    # Naming the project in the body widens nothing either.
    body = {"commands": ["true"], "project_id": studio.project_id}
    smuggled = await client.post("/api/v1/tasks", json=body, headers=outsider.headers)
    assert_error(smuggled, 404, "NOT_FOUND")
    # Its own project's list is untouched.
    own = await client.get("/api/v1/tasks", headers=outsider.headers)
    assert own.json()["results"] == []


async def test_each_denial_is_audited_with_the_effective_subject(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    refused = await client.post(
        "/api/v1/tasks", json={"commands": ["true"]}, headers=studio.headers(studio.viewer)
    )
    assert refused.status_code == 403
    record = await denial(client, admin, studio.viewer, "task:create")
    assert record["subject"] == {
        "user_id": str(studio.viewer.id),
        "group_ids": [],
        "role_names": ["viewer"],
        "scope": f"project:{studio.project_id}",
    }
    assert (record["resource_type"], record["detail"]["status"]) == ("task", 403)
    assert record["trace_id"] == refused.headers["x-trace-id"]

    invisible = await client.get("/api/v1/tasks", headers=studio.headers(studio.outsider))
    assert invisible.status_code == 404
    hidden = await denial(client, admin, studio.outsider, "project:read")
    assert hidden["detail"]["status"] == 404
    assert hidden["subject"]["role_names"] == []


async def test_a_disabled_project_keeps_its_tasks_readable_and_refuses_changes(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    task_id = await submit(client, studio.headers(studio.member))
    disabled = await client.post(
        f"/api/v1/projects/{studio.project_id}/disable", headers=studio.owner.headers
    )
    assert disabled.status_code == 200, disabled.text

    read = await client.get(f"/api/v1/tasks/{task_id}", headers=studio.member.headers)
    assert read.status_code == 200
    for response in (
        await client.post(
            "/api/v1/tasks", json={"commands": ["true"]}, headers=studio.headers(studio.member)
        ),
        await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=studio.member.headers),
    ):
        assert_error(response, 409, "CONFLICT", "disabled")
    # Still a 403, not a 409, for whoever may not do it anyway.
    viewer = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=studio.viewer.headers)
    assert viewer.status_code == 403


async def _roles(client: httpx.AsyncClient, studio: Team, user: User) -> list[str]:
    me = (await client.get("/api/v1/users/me", headers=studio.headers(user))).json()
    found = [p for p in me["projects"] if p["project_id"] == studio.project_id]
    return found[0]["roles"] if found else []


async def test_a_role_change_holds_from_the_next_request(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio = await team(client, admin)
    task_id = await submit(client, studio.headers(studio.other_member))
    refused = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=studio.member.headers)
    assert refused.status_code == 403

    bindings = await client.get(
        "/api/v1/role-bindings",
        params={"subject_id": str(studio.member.id)},
        headers=studio.headers(studio.owner),
    )
    [binding] = bindings.json()["results"]
    promote = {
        "subject_type": "user",
        "subject_id": str(studio.member.id),
        "role": "operator",
        "scope_id": studio.project_id,
    }
    made = await client.post("/api/v1/role-bindings", json=promote, headers=studio.owner.headers)
    assert made.status_code == 201, made.text
    assert await _roles(client, studio, studio.member) == ["member", "operator"]
    allowed = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=studio.member.headers)
    assert allowed.status_code == 202, allowed.text

    for binding_id in (binding["id"], made.json()["id"]):
        removed = await client.delete(
            f"/api/v1/role-bindings/{binding_id}", headers=studio.owner.headers
        )
        assert removed.status_code == 204
    gone = await client.get(f"/api/v1/tasks/{task_id}", headers=studio.member.headers)
    assert gone.status_code == 404
