"""Submitting tasks: the three inputs, validation, sessions, and the no-model fast failure."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from taskgate.db.session import Database
from taskgate.models import QueueJob
from tests.support.clients import User, create_user
from tests.tasks.flows import events, get_task, submit, types_of


async def queue_jobs(app: FastAPI) -> list[QueueJob]:
    db: Database = app.state.db
    async with db.transaction(write=False) as session:
        return list((await session.scalars(select(QueueJob).order_by(QueueJob.id))).all())


async def test_commands_task_is_queued_with_location_and_session(
    client: httpx.AsyncClient, app: FastAPI, alice: User
) -> None:
    response = await client.post(
        "/api/v1/tasks",
        json={"commands": ["echo hi"], "labels": ["ci"], "priority": 3},
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "QUEUED"
    assert body["created_at"].endswith("Z")
    assert response.headers["location"] == f"/api/v1/tasks/{body['task_id']}"
    assert response.headers["x-session-id"] == body["session_id"]
    task = await get_task(client, alice, body["task_id"])
    assert task["kind"] == "commands"
    assert task["input"] == {"commands": ["echo hi"]}
    assert task["labels"] == ["ci"]
    assert task["priority"] == 3
    assert task["timeout_seconds"] == 300
    assert task["usage"] == {
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": 0,
        "cost_usd": 0.0,
    }
    [job] = await queue_jobs(app)
    assert (job.kind, job.payload, job.priority) == ("task.run", {"task_id": body["task_id"]}, 3)
    assert types_of(await events(client, alice, body["task_id"])) == ["task.created"]


async def test_a_task_carries_id_beside_shannons_task_id(
    client: httpx.AsyncClient, alice: User
) -> None:
    created = await submit(client, alice, commands=["true"])
    assert created["id"] == created["task_id"]
    task = await get_task(client, alice, created["id"])
    assert task["id"] == task["task_id"] == created["id"]
    listed = await client.get("/api/v1/tasks", headers=alice.headers)
    assert [t["id"] for t in listed.json()["results"]] == [created["id"]]
    shannon = await client.get("/api/v1/tasks", params={"offset": 0}, headers=alice.headers)
    assert [t["id"] for t in shannon.json()["tasks"]] == [created["id"]]


async def test_script_task_keeps_language_and_content(
    client: httpx.AsyncClient, alice: User
) -> None:
    created = await submit(
        client, alice, script={"language": "python", "content": "print(1)"}, timeout_seconds=5
    )
    task = await get_task(client, alice, created["task_id"])
    assert task["kind"] == "script"
    assert task["input"] == {"script": {"language": "python", "content": "print(1)"}}
    assert task["timeout_seconds"] == 5


async def test_tasks_share_a_session_when_given_one(
    client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    first = await submit(client, alice, commands=["true"])
    second = await submit(client, alice, commands=["true"], session_id=first["session_id"])
    assert second["session_id"] == first["session_id"]
    chosen = str(uuid.uuid4())
    third = await submit(client, alice, commands=["true"], session_id=chosen)
    assert third["session_id"] == chosen
    response = await client.post(
        "/api/v1/tasks",
        json={"commands": ["true"], "session_id": first["session_id"]},
        headers=bob.headers,
    )
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"query", "script", "commands"}),
        ({"query": "hi", "commands": ["ls"]}, {"query", "commands"}),
        ({"query": "x", "script": {"language": "bash", "content": "ls"}}, {"query", "script"}),
        ({"script": {"language": "ruby", "content": "puts 1"}}, {"script.language"}),
        ({"commands": ["echo"] * 51}, {"commands"}),
        ({"commands": []}, {"commands"}),
        ({"commands": ["ls"], "timeout_seconds": 0}, {"timeout_seconds"}),
        ({"commands": ["ls"], "timeout_seconds": 86_401}, {"timeout_seconds"}),
        ({"commands": ["ls"], "priority": 11}, {"priority"}),
        ({"commands": ["ls"], "attachments": ["not-a-uuid"]}, {"attachments.0"}),
        ({"commands": ["ls"], "labels": ["x"] * 21}, {"labels"}),
        ({"commands": ["ls"], "session_id": "abc"}, {"session_id"}),
        ({"commands": ["echo ok", "echo a\u0000b"]}, {"commands.1"}),
        ({"script": {"language": "bash", "content": "echo a\u0000b"}}, {"script.content"}),
    ],
)
async def test_invalid_bodies_name_the_fields(
    client: httpx.AsyncClient, alice: User, body: dict[str, object], fields: set[str]
) -> None:
    response = await client.post("/api/v1/tasks", json=body, headers=alice.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert {d["field"] for d in error["details"]} == fields


async def test_text_task_without_model_fails_at_once(
    client: httpx.AsyncClient, app: FastAPI, alice: User
) -> None:
    response = await client.post(
        "/api/v1/tasks", json={"query": "What is 2+2?"}, headers=alice.headers
    )
    assert response.status_code == 201
    assert "TASKGATE_MODEL__BASE_URL" in response.json()["message"]
    task = await get_task(client, alice, response.json()["task_id"])
    assert task["status"] == "FAILED"
    assert task["error_code"] == "MODEL_UNAVAILABLE"
    assert "TASKGATE_MODEL__BASE_URL" in task["error"]
    assert task["completed_at"] is not None
    assert await queue_jobs(app) == []
    found = await events(client, alice, task["task_id"])
    assert types_of(found) == ["task.created", "task.failed"]
    assert found[1]["payload"]["code"] == "MODEL_UNAVAILABLE"


async def test_attachments_and_criteria_are_kept(client: httpx.AsyncClient, alice: User) -> None:
    attachment = str(uuid.uuid4())
    created = await submit(
        client,
        alice,
        commands=["ls"],
        attachments=[attachment],
        acceptance_criteria=["lists files"],
        context={"repo": "x"},
    )
    task = await get_task(client, alice, created["task_id"])
    assert task["attachments"] == [attachment]
    assert task["acceptance_criteria"] == ["lists files"]
    assert task["context"] == {"repo": "x"}


async def test_read_only_key_cannot_submit(client: httpx.AsyncClient, admin: User) -> None:
    user = await create_user(client, admin, "reader")
    response = await client.post(
        "/api/v1/api-keys", json={"name": "ro", "scopes": ["tasks:read"]}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    key = {"X-API-Key": response.json()["key"]}
    denied = await client.post("/api/v1/tasks", json={"commands": ["ls"]}, headers=key)
    assert denied.status_code == 403
    assert (await client.get("/api/v1/tasks", headers=key)).status_code == 200
