"""Subscriptions through the API: patterns, filters, ownership."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.destinations.test_destinations_api import create_destination, error_fields, webhook_body
from tests.support.clients import User, create_user


async def subscribe(
    client: httpx.AsyncClient, user: User, destination_id: str, pattern: str, **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/subscriptions",
        json={"destination_id": destination_id, "event_pattern": pattern, **extra},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_subscription_lifecycle(client: httpx.AsyncClient, admin: User) -> None:
    destination = await create_destination(client, admin, webhook_body())
    created = await subscribe(
        client, admin, destination["id"], "task.*", filter={"payload": {"status": "FAILED"}}
    )
    assert created["event_pattern"] == "task.*"
    assert created["filter"] == {"payload": {"status": "FAILED"}}
    assert created["is_active"] is True
    path = f"/api/v1/subscriptions/{created['id']}"
    assert (await client.get(path, headers=admin.headers)).json() == created

    other = await create_destination(client, admin, webhook_body(name="other"))
    await subscribe(client, admin, other["id"], "*")
    every = await client.get("/api/v1/subscriptions", headers=admin.headers)
    assert len(every.json()["results"]) == 2
    only = await client.get(
        "/api/v1/subscriptions", params={"destination_id": destination["id"]}, headers=admin.headers
    )
    assert [s["id"] for s in only.json()["results"]] == [created["id"]]

    paused = await client.patch(path, json={"is_active": False}, headers=admin.headers)
    assert paused.status_code == 200
    assert paused.json()["is_active"] is False
    assert paused.json()["filter"] == created["filter"]

    assert (await client.delete(path, headers=admin.headers)).status_code == 204
    assert (await client.get(path, headers=admin.headers)).status_code == 404


@pytest.mark.parametrize(
    ("extra", "fields"),
    [
        ({"event_pattern": "task."}, {"event_pattern"}),
        ({"event_pattern": "task.*.done"}, {"event_pattern"}),
        ({"event_pattern": "**"}, {"event_pattern"}),
        ({"event_pattern": ""}, {"event_pattern"}),
        ({"filter": {"colour": "red"}}, {"filter.colour"}),
        ({"filter": {"payload": "FAILED"}}, {"filter.payload"}),
        ({"filter": ["task_id"]}, {"filter"}),
    ],
)
async def test_invalid_subscriptions_are_400(
    client: httpx.AsyncClient, admin: User, extra: dict[str, Any], fields: set[str]
) -> None:
    destination = await create_destination(client, admin, webhook_body())
    body = {"destination_id": destination["id"], "event_pattern": "*", **extra}
    response = await client.post("/api/v1/subscriptions", json=body, headers=admin.headers)
    assert fields <= error_fields(response)


async def test_another_users_subscription_is_404(client: httpx.AsyncClient, admin: User) -> None:
    destination = await create_destination(client, admin, webhook_body())
    mine = await subscribe(client, admin, destination["id"], "*")
    other = await create_user(client, admin, "eve")
    path = f"/api/v1/subscriptions/{mine['id']}"
    for method, body in [("GET", None), ("PATCH", {"is_active": False}), ("DELETE", None)]:
        response = await client.request(method, path, json=body, headers=other.headers)
        assert response.status_code == 404, (method, response.text)
    listed = await client.get("/api/v1/subscriptions", headers=other.headers)
    assert listed.json()["results"] == []
    assert (await client.get(path, headers=admin.headers)).json()["is_active"] is True


async def test_deleting_a_destination_removes_its_subscriptions(
    client: httpx.AsyncClient, admin: User
) -> None:
    destination = await create_destination(client, admin, webhook_body())
    subscription = await subscribe(client, admin, destination["id"], "*")
    await client.delete(f"/api/v1/destinations/{destination['id']}", headers=admin.headers)
    gone = await client.get(f"/api/v1/subscriptions/{subscription['id']}", headers=admin.headers)
    assert gone.status_code == 404
