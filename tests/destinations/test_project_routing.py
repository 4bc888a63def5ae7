"""A subscription is its project's: it routes every member's events of the project, and
none of another project's, whoever made them."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import AppFactory
from tests.destinations.receiver import receiver
from tests.destinations.support import delivering_app
from tests.destinations.test_destinations_api import webhook_body
from tests.destinations.test_dispatch import types_by_path
from tests.governance.support import bind, in_project, project
from tests.support.clients import create_user


async def _route(client: httpx.AsyncClient, headers: dict[str, str], url: str) -> None:
    """A destination at ``url`` and a subscription of every event to it, where ``headers``
    say (the project they name, or the user's default one)."""
    made = await client.post("/api/v1/destinations", json=webhook_body(url), headers=headers)
    assert made.status_code == 201, made.text
    body = {"destination_id": made.json()["id"], "event_pattern": "*"}
    routed = await client.post("/api/v1/subscriptions", json=body, headers=headers)
    assert routed.status_code == 201, routed.text


async def test_a_projects_subscription_routes_everyones_events_of_the_project(
    app_factory: AppFactory,
) -> None:
    async with delivering_app(app_factory) as env, receiver() as hook:
        client, admin = env.client, env.admin
        owner = await create_user(client, admin, "olga")
        member = await create_user(client, admin, "mia")
        studio = await project(client, owner, "Studio")
        assert (await bind(client, owner, member.id, "member", studio)).status_code == 201
        await _route(client, in_project(owner, studio), hook.url("/studio"))
        await _route(client, owner.headers, hook.url("/olga"))
        me = await client.get("/api/v1/users/me", headers=owner.headers)
        default = uuid.UUID(me.json()["default_project_id"])

        studio_id = uuid.UUID(studio)
        await env.emit(member.id, "task.created", project_id=studio_id)
        await env.emit(owner.id, "task.completed", project_id=studio_id)
        last = await env.emit(owner.id, "task.failed", project_id=default)
        await env.wait_dispatched(last)

    assert types_by_path(hook) == {
        "/studio": ["task.created", "task.completed"],
        "/olga": ["task.failed"],
    }
