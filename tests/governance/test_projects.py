"""Projects through the API: each user's default project, CRUD, the project a request names,
and what a disabled or invisible project refuses."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from taskgate.models import RoleBinding
from tests.conftest import AppFactory
from tests.identity.api import first_admin
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login

TASK = {"commands": ["true"]}


async def _project(client: httpx.AsyncClient, user: User, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/projects", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _in(user: User, project: str) -> dict[str, str]:
    return {**user.headers, "X-Tenant-ID": project}


async def _task_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    response = await client.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 200, response.text
    return {t["task_id"] for t in response.json()["results"]}


async def _submit(client: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> str:
    response = await client.post("/api/v1/tasks", json={**TASK, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_every_user_gets_a_default_project(
    client: httpx.AsyncClient, app: FastAPI, admin: User
) -> None:
    alice = await create_user(client, admin, "alice")
    for user in (admin, alice):
        me = (await client.get("/api/v1/users/me", headers=user.headers)).json()
        listed = (await client.get("/api/v1/projects", headers=user.headers)).json()["results"]
        mine = [p for p in listed if p["is_default"] and p["slug"] == f"default-{user.username}"]
        assert len(mine) == 1
        assert me["default_project_id"] == mine[0]["id"]
        assert mine[0]["status"] == "active"
    async with app.state.db.transaction(write=False) as session:
        members = await session.execute(
            select(RoleBinding.subject_id, RoleBinding.role).where(
                RoleBinding.project_id == uuid.UUID(me["default_project_id"])
            )
        )
        assert members.all() == [(alice.id, "owner")]


async def test_create_read_update_and_list(client: httpx.AsyncClient, admin: User) -> None:
    alice = await create_user(client, admin, "alice")
    created = await _project(client, alice, name="Studio One", team="video")
    assert created["slug"] == "studio-one"
    assert (created["name"], created["team"], created["status"]) == (
        "Studio One",
        "video",
        "active",
    )
    assert created["is_default"] is False
    again = await _project(client, alice, name="Studio  One!")
    assert again["slug"] == "studio-one-2"

    taken = await client.post(
        "/api/v1/projects", json={"name": "x", "slug": "studio-one"}, headers=alice.headers
    )
    assert taken.status_code == 409
    for slug in ("Bad Slug", "default-alice", "0190a5c4-0000-7000-8000-000000000000"):
        bad = await client.post(
            "/api/v1/projects", json={"name": "x", "slug": slug}, headers=alice.headers
        )
        assert bad.status_code == 400, slug
        assert bad.json()["error"]["details"][0]["field"] == "slug"

    path = f"/api/v1/projects/{created['id']}"
    patched = await client.patch(path, json={"description": "clips"}, headers=alice.headers)
    assert patched.status_code == 200
    assert (patched.json()["description"], patched.json()["name"]) == ("clips", "Studio One")
    assert (await client.get(path, headers=alice.headers)).json()["description"] == "clips"

    bob = await create_user(client, admin, "bob")
    assert (await client.get(path, headers=bob.headers)).status_code == 404
    assert (await client.patch(path, json={"name": "x"}, headers=bob.headers)).status_code == 404
    assert (await client.post(f"{path}/disable", headers=bob.headers)).status_code == 404
    bobs = {
        p["slug"]
        for p in (await client.get("/api/v1/projects", headers=bob.headers)).json()["results"]
    }
    assert bobs == {"default-bob"}
    everyone = (await client.get("/api/v1/projects?limit=100", headers=admin.headers)).json()
    assert {"studio-one", "default-bob", "default-alice"} <= {
        p["slug"] for p in everyone["results"]
    }
    assert (await client.get(path, headers=admin.headers)).status_code == 200


async def test_creation_can_be_kept_to_admins(app_factory: AppFactory) -> None:
    async with app_factory(governance={"project_creation": "admins"}) as (app, client):
        await first_admin(app)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        alice = await create_user(client, admin, "alice")
        refused = await client.post("/api/v1/projects", json={"name": "p"}, headers=alice.headers)
        assert refused.status_code == 403
        assert (
            await client.post("/api/v1/projects", json={"name": "p"}, headers=admin.headers)
        ).status_code == 201


async def test_the_request_names_its_project(client: httpx.AsyncClient, admin: User) -> None:
    alice = await create_user(client, admin, "alice")
    studio = await _project(client, alice, name="Studio")
    by_id = await _submit(client, _in(alice, studio["id"]))
    by_slug = await _submit(client, _in(alice, "studio"))
    by_openai = await _submit(client, {**alice.headers, "OpenAI-Project": studio["id"]})
    by_field = await _submit(client, alice.headers, project_id=studio["id"])
    default = await _submit(client, alice.headers)

    in_studio = {by_id, by_slug, by_openai, by_field}
    assert await _task_ids(client, _in(alice, "studio")) == in_studio
    response = await client.get(
        "/api/v1/tasks", params={"project_id": studio["id"]}, headers=alice.headers
    )
    assert {t["task_id"] for t in response.json()["results"]} == in_studio
    assert await _task_ids(client, alice.headers) == {default}
    # Shannon's offset form is the same list.
    shannon = await client.get("/api/v1/tasks?offset=0", headers=_in(alice, "studio"))
    assert shannon.json()["total_count"] == 4


async def test_unknown_or_invisible_project_is_404(client: httpx.AsyncClient, admin: User) -> None:
    alice = await create_user(client, admin, "alice")
    bob = await create_user(client, admin, "bob")
    hidden = await _project(client, bob, name="Hidden")
    for reference in ("nope", hidden["id"], "hidden", "default-bob"):
        for method, path in (("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks")):
            response = await client.request(
                method, path, json=TASK if method == "POST" else None, headers=_in(alice, reference)
            )
            assert response.status_code == 404, (reference, method, response.text)
            assert response.json()["error"]["code"] == "NOT_FOUND"
    # A body naming another user's project cannot put a task there either.
    planted = await client.post(
        "/api/v1/tasks", json={**TASK, "project_id": hidden["id"]}, headers=alice.headers
    )
    assert planted.status_code == 404
    assert await _task_ids(client, _in(bob, "hidden")) == set()
    # The instance administrator sees every project.
    assert (await client.get("/api/v1/tasks", headers=_in(admin, "hidden"))).status_code == 200


async def test_disabled_project_is_read_only(client: httpx.AsyncClient, admin: User) -> None:
    alice = await create_user(client, admin, "alice")
    studio = await _project(client, alice, name="Studio")
    kept = await _submit(client, _in(alice, "studio"))
    disabled = await client.post(f"/api/v1/projects/{studio['id']}/disable", headers=alice.headers)
    assert disabled.status_code == 200
    assert disabled.json()["status"] == "disabled"

    refused = await client.post("/api/v1/tasks", json=TASK, headers=_in(alice, "studio"))
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "CONFLICT"
    event = {"type": "order.created", "payload": {}}
    refused = await client.post("/api/v1/events", json=event, headers=_in(alice, "studio"))
    assert refused.status_code == 409
    assert await _task_ids(client, _in(alice, "studio")) == {kept}
    assert (await client.get(f"/api/v1/tasks/{kept}", headers=alice.headers)).status_code == 200
    # Other projects are untouched.
    await _submit(client, alice.headers)

    enabled = await client.post(f"/api/v1/projects/{studio['id']}/enable", headers=alice.headers)
    assert enabled.json()["status"] == "active"
    await _submit(client, _in(alice, "studio"))


async def test_rate_limit_per_project(app_factory: AppFactory) -> None:
    async with app_factory(rate_limit={"project": "3/minute"}) as (app, client):
        await first_admin(app)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        alice = await create_user(client, admin, "alice")
        studio = await _project(client, alice, name="Studio")
        statuses = []
        for user in (alice, admin, alice, admin):
            response = await client.get("/api/v1/tasks", headers=_in(user, studio["id"]))
            statuses.append(response.status_code)
        assert statuses == [200, 200, 200, 429]
        # Each principal's own budget is untouched: another project still answers.
        assert (await client.get("/api/v1/tasks", headers=alice.headers)).status_code == 200
