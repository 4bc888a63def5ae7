"""The seam applied to what a project's admins manage: destinations, subscriptions and
webhook sources. Every role of the project reads them, only its admins change them; another
project's user or key finds nothing; a disabled project changes nothing and its webhook
sources accept nothing."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx

from tests.governance.support import Team, assert_error, denial, project, team
from tests.identity.api import create_key
from tests.support.clients import User

DESTINATION = {
    "name": "ops hook",
    "destination_type": "webhook",
    "destination_config": {"url": "http://127.0.0.1:9/hook"},
}


async def _create(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _managed(client: httpx.AsyncClient, admin: User) -> tuple[Team, dict[str, str]]:
    """The studio with a destination, a subscription and a webhook source its admin made:
    their paths by kind."""
    studio = await team(client, admin)
    headers = studio.headers(studio.admin)
    destination = await _create(client, "/api/v1/destinations", headers, DESTINATION)
    subscription = await _create(
        client,
        "/api/v1/subscriptions",
        headers,
        {"destination_id": destination["id"], "event_pattern": "task.*"},
    )
    source = await _create(client, "/api/v1/webhook-sources", headers, {"name": "Stripe"})
    return studio, {
        "destination": f"/api/v1/destinations/{destination['id']}",
        "subscription": f"/api/v1/subscriptions/{subscription['id']}",
        "webhook_source": f"/api/v1/webhook-sources/{source['id']}",
        "source_url": source["url"],
        "source_secret": source["secret"],
        "destination_id": destination["id"],
    }


_LISTS = ("/api/v1/destinations", "/api/v1/subscriptions", "/api/v1/webhook-sources")
_CHANGES = {
    "destination": {"name": "renamed"},
    "subscription": {"event_pattern": "job.*"},
    "webhook_source": {"name": "renamed"},
}


async def test_every_role_reads_and_only_admins_change_what_admins_manage(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio, paths = await _managed(client, admin)
    for user in (studio.viewer, studio.member, studio.operator):
        for kind in _CHANGES:
            read = await client.get(paths[kind], headers=user.headers)
            assert read.status_code == 200, (user.username, kind, read.text)
        for path in _LISTS:
            listed = await client.get(path, headers=studio.headers(user))
            assert len(listed.json()["results"]) == 1, (user.username, path)
        deliveries = await client.get(f"{paths['destination']}/deliveries", headers=user.headers)
        assert deliveries.status_code == 200

    member = studio.member
    for path, body, permission in (
        ("/api/v1/destinations", DESTINATION, "destination:create"),
        (
            "/api/v1/subscriptions",
            {"destination_id": paths["destination_id"], "event_pattern": "*"},
            "subscription:create",
        ),
        ("/api/v1/webhook-sources", {"name": "GitHub"}, "webhook_source:create"),
    ):
        refused = await client.post(path, json=body, headers=studio.headers(member))
        assert_error(refused, 403, "FORBIDDEN", permission)
    for kind, change in _CHANGES.items():
        for method, json, verb in (("PATCH", change, "update"), ("DELETE", None, "delete")):
            response = await client.request(
                method, paths[kind], json=json, headers=studio.operator.headers
            )
            assert_error(response, 403, "FORBIDDEN", f"{kind}:{verb}")
    probe = await client.post(f"{paths['destination']}/test", headers=member.headers)
    assert_error(probe, 403, "FORBIDDEN", "destination:test")

    record = await denial(client, admin, studio.operator, "webhook_source:delete")
    assert record["resource_type"] == "webhook_source"
    assert record["subject"]["role_names"] == ["operator"]

    for kind, change in _CHANGES.items():
        changed = await client.patch(paths[kind], json=change, headers=studio.owner.headers)
        assert changed.status_code == 200, (kind, changed.text)
    for kind in ("subscription", "destination", "webhook_source"):
        gone = await client.delete(paths[kind], headers=studio.owner.headers)
        assert gone.status_code == 204, (kind, gone.text)


async def test_another_projects_user_or_key_finds_nothing_and_routes_nothing_here(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio, paths = await _managed(client, admin)
    outsider = studio.outsider
    for kind, change in _CHANGES.items():
        for method, json in (("GET", None), ("PATCH", change), ("DELETE", None)):
            response = await client.request(
                method, paths[kind], json=json, headers=outsider.headers
            )
            assert response.status_code == 404, (kind, method, response.text)
    for path in _LISTS:
        named = await client.get(path, headers=studio.headers(outsider))
        assert_error(named, 404, "NOT_FOUND", "No such project")
        assert (await client.get(path, headers=outsider.headers)).json()["results"] == []

    # The outsider, admin of its own project, cannot route its events to the studio's
    # destination, nor the studio's admin the studio's events to another project's.
    body = {"destination_id": paths["destination_id"], "event_pattern": "*"}
    smuggled = await client.post("/api/v1/subscriptions", json=body, headers=outsider.headers)
    assert_error(smuggled, 404, "NOT_FOUND", "No such destination")
    elsewhere = await project(client, studio.admin, "Elsewhere")
    theirs = await _create(
        client,
        "/api/v1/destinations",
        {**studio.admin.headers, "X-Tenant-ID": elsewhere},
        DESTINATION,
    )
    crossed = await client.post(
        "/api/v1/subscriptions",
        json={"destination_id": theirs["id"], "event_pattern": "*"},
        headers=studio.headers(studio.admin),
    )
    assert_error(crossed, 404, "NOT_FOUND", "No such destination")

    key = (await create_key(client, studio.admin.headers, project_id=elsewhere))["key"]
    for kind in _CHANGES:
        hidden = await client.get(paths[kind], headers={"X-API-Key": key})
        assert hidden.status_code == 404, kind
    scopes = ["destinations:read", "subscriptions:read", "webhooks:read"]
    reader = (await create_key(client, studio.admin.headers, scopes=scopes))["key"]
    for kind, change in _CHANGES.items():
        assert (await client.get(paths[kind], headers={"X-API-Key": reader})).status_code == 200
        refused = await client.patch(paths[kind], json=change, headers={"X-API-Key": reader})
        assert_error(refused, 403, "FORBIDDEN", "scope")


async def test_webhooks_start_the_projects_workflows_until_the_project_is_disabled(
    client: httpx.AsyncClient, admin: User
) -> None:
    studio, paths = await _managed(client, admin)
    body = b'{"type": "order.created", "order_id": 1}'
    signature = (
        "sha256=" + hmac.new(paths["source_secret"].encode(), body, hashlib.sha256).hexdigest()
    )
    signed = {"content-type": "application/json", "X-Webhook-Signature": signature}
    # A member's webhook-triggered workflow runs from the admin's source: both the project's.
    workflow = {
        "name": "On order",
        "trigger_type": "webhook",
        "trigger_config": {"event_type": "order.created"},
        "graph": {"nodes": [{"id": "say", "type": "log", "config": {"message": "hi"}}]},
    }
    await _create(client, "/api/v1/workflows", studio.headers(studio.member), workflow)
    accepted = await client.post(paths["source_url"], content=body, headers=signed)
    assert accepted.status_code == 202, accepted.text
    assert len(accepted.json()["execution_ids"]) == 1

    disabled = await client.post(
        f"/api/v1/projects/{studio.project_id}/disable", headers=studio.owner.headers
    )
    assert disabled.status_code == 200, disabled.text
    owner = studio.owner
    for kind, change in _CHANGES.items():
        assert (await client.get(paths[kind], headers=studio.viewer.headers)).status_code == 200
        for method, json in (("PATCH", change), ("DELETE", None)):
            response = await client.request(method, paths[kind], json=json, headers=owner.headers)
            assert_error(response, 409, "CONFLICT", "disabled")
    for path, created in (
        ("/api/v1/destinations", DESTINATION),
        ("/api/v1/webhook-sources", {"name": "GitHub"}),
    ):
        response = await client.post(path, json=created, headers=studio.headers(owner))
        assert_error(response, 409, "CONFLICT", "disabled")
    probe = await client.post(f"{paths['destination']}/test", headers=owner.headers)
    assert_error(probe, 409, "CONFLICT", "disabled")
    refused = await client.post(paths["source_url"], content=body, headers=signed)
    assert_error(refused, 409, "CONFLICT", "disabled")
