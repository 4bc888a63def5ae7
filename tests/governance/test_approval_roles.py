"""The seam applied to approvals: read by all who see the project, decided by the member who
started what waits (or an approver it names) and by operators, never by viewers or
strangers, and never in a disabled project."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import httpx
from fastapi import FastAPI

from taskgate.approvals.repository import encode_approvers
from taskgate.approvals.service import request_task_approval
from taskgate.db.session import Database
from taskgate.models import Task
from tests.governance.support import assert_error, denial, submit, team
from tests.identity.api import create_key
from tests.support.clients import User

APPROVE = {"approved": True}


async def ask(app: FastAPI, task_id: str, approvers: Sequence[str] = ()) -> str:
    """An approval the task's agent asks for (``approvers``: the usernames it names)."""
    db: Database = app.state.db
    async with db.transaction() as session:
        task = await session.get(Task, uuid.UUID(task_id))
        assert task is not None
        approval = await request_task_approval(
            session, task, tool="run_commands", arguments={"commands": ["true"]}
        )
        approval.approvers = encode_approvers(approvers)
        return str(approval.id)


async def test_a_viewer_reads_every_approval_but_decides_none(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    studio = await team(client, admin)
    approval_id = await ask(app, await submit(client, studio.headers(studio.member)))
    viewer = studio.viewer

    read = await client.get(f"/api/v1/approvals/{approval_id}", headers=viewer.headers)
    assert read.status_code == 200, read.text
    listed = await client.get("/api/v1/approvals", headers=studio.headers(viewer))
    assert [a["id"] for a in listed.json()["results"]] == [approval_id]
    # Its own project's list is another list.
    own = await client.get("/api/v1/approvals", headers=viewer.headers)
    assert own.json()["results"] == []

    refused = await client.post(
        f"/api/v1/approvals/{approval_id}/decision", json=APPROVE, headers=viewer.headers
    )
    assert_error(refused, 403, "FORBIDDEN", "approval:decide")
    record = await denial(client, admin, viewer, "approval:decide")
    assert (record["resource_id"], record["project_id"]) == (approval_id, studio.project_id)


async def test_the_starter_an_approver_it_names_and_operators_decide(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    studio = await team(client, admin)
    mine = await ask(app, await submit(client, studio.headers(studio.member)))
    theirs = await ask(app, await submit(client, studio.headers(studio.other_member)))
    naming = await ask(app, await submit(client, studio.headers(studio.other_member)), ["mia"])

    refused = await client.post(
        f"/api/v1/approvals/{theirs}/decision", json=APPROVE, headers=studio.member.headers
    )
    assert_error(refused, 403, "FORBIDDEN", "approval:decide", "what you created")
    for approval_id, user in (
        (mine, studio.member),
        (naming, studio.member),  # mia is named on it
        (theirs, studio.operator),
    ):
        decided = await client.post(
            f"/api/v1/approvals/{approval_id}/decision", json=APPROVE, headers=user.headers
        )
        assert decided.status_code == 200, (approval_id, decided.text)
        shown = await client.get(f"/api/v1/approvals/{approval_id}", headers=user.headers)
        assert shown.json()["decided_by"] == user.username


async def test_a_user_of_another_project_finds_nothing_even_when_named(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    studio = await team(client, admin)
    outsider = studio.outsider
    task_id = await submit(client, studio.headers(studio.member))
    approval_id = await ask(app, task_id, [outsider.username])

    for method, path, body in (
        ("GET", f"/api/v1/approvals/{approval_id}", None),
        ("POST", f"/api/v1/approvals/{approval_id}/decision", APPROVE),
        (
            "POST",
            "/api/v1/approvals/decision",
            {"approval_id": approval_id, "workflow_id": task_id, "approved": True},
        ),
    ):
        response = await client.request(method, path, json=body, headers=outsider.headers)
        assert_error(response, 404, "NOT_FOUND", "Approval not found")
    named = await client.get("/api/v1/approvals", headers=studio.headers(outsider))
    assert_error(named, 404, "NOT_FOUND", "No such project")
    queried = await client.get(
        "/api/v1/approvals", params={"project_id": studio.project_id}, headers=outsider.headers
    )
    assert_error(queried, 404, "NOT_FOUND", "No such project")
    own = await client.get("/api/v1/approvals", headers=outsider.headers)
    assert own.json()["results"] == []


async def test_a_read_key_decides_nothing(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    studio = await team(client, admin)
    approval_id = await ask(app, await submit(client, studio.headers(studio.member)))
    key = await create_key(client, studio.member.headers, scopes=["approvals:read"])
    headers = {"X-API-Key": key["key"]}
    assert (
        await client.get(f"/api/v1/approvals/{approval_id}", headers=headers)
    ).status_code == 200
    refused = await client.post(
        f"/api/v1/approvals/{approval_id}/decision", json=APPROVE, headers=headers
    )
    assert_error(refused, 403, "FORBIDDEN", "approvals:write")


async def test_a_disabled_project_keeps_approvals_readable_and_refuses_decisions(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    studio = await team(client, admin)
    approval_id = await ask(app, await submit(client, studio.headers(studio.member)))
    disabled = await client.post(
        f"/api/v1/projects/{studio.project_id}/disable", headers=studio.owner.headers
    )
    assert disabled.status_code == 200, disabled.text

    read = await client.get(f"/api/v1/approvals/{approval_id}", headers=studio.member.headers)
    assert read.json()["status"] == "PENDING"
    for user in (studio.member, studio.operator):
        refused = await client.post(
            f"/api/v1/approvals/{approval_id}/decision", json=APPROVE, headers=user.headers
        )
        assert_error(refused, 409, "CONFLICT", "disabled")
    still = await client.get(f"/api/v1/approvals/{approval_id}", headers=studio.viewer.headers)
    assert still.json()["status"] == "PENDING"
