"""Destinations through the API: validation, the SSRF guard, write-only secrets, ownership."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from taskgate.db.session import Database
from taskgate.models import AuditRecord, Destination
from tests.conftest import AppFactory
from tests.destinations.receiver import receiver
from tests.support.clients import User, create_user, login

SECRET = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTA="
SLACK_HOOK = "https://hooks.slack.example/services/T000/B000/credential-part"


def webhook_body(url: str = "http://127.0.0.1:9/hook", **extra: Any) -> dict[str, Any]:
    return {
        "name": "ops hook",
        "destination_type": "webhook",
        "destination_config": {"url": url},
        "secret": SECRET,
        **extra,
    }


async def create_destination(
    client: httpx.AsyncClient, user: User, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/api/v1/destinations", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def error_fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    return {d["field"] for d in response.json()["error"]["details"]}


async def test_create_shows_the_destination_but_never_its_secret(
    client: httpx.AsyncClient, admin: User, app: FastAPI
) -> None:
    response = await client.post("/api/v1/destinations", json=webhook_body(), headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/api/v1/destinations/{created['id']}"
    assert created["has_secret"] is True
    assert created["destination_config"] == {"url": "http://127.0.0.1:9/hook"}
    assert created["is_active"] is True
    assert created["consecutive_failures"] == 0
    assert "secret" not in created
    assert SECRET not in response.text

    fetched = await client.get(f"/api/v1/destinations/{created['id']}", headers=admin.headers)
    listed = await client.get("/api/v1/destinations", headers=admin.headers)
    assert fetched.json() == created
    assert [d["id"] for d in listed.json()["results"]] == [created["id"]]
    for text in (fetched.text, listed.text):
        assert SECRET not in text

    db: Database = app.state.db
    async with db.transaction(write=False) as session:
        row = await session.get(Destination, uuid.UUID(created["id"]))
        assert row is not None
        assert row.secret_ciphertext is not None
        assert SECRET.encode() not in row.secret_ciphertext  # sealed at rest
        records = (await session.scalars(select(AuditRecord))).all()
    assert "destination.create" in {r.action for r in records}
    assert all(SECRET not in str(r.detail) for r in records)


async def test_a_chat_webhook_url_is_the_secret_and_stays_hidden(
    client: httpx.AsyncClient, admin: User
) -> None:
    async with receiver() as hook:
        body = {
            "name": "team chat",
            "destination_type": "slack",
            "destination_config": {"channel": "#ops"},
            "secret": hook.url("/services/T000/B000/credential-part"),
        }
        created = await create_destination(client, admin, body)
    assert created["has_secret"] is True
    assert created["destination_config"] == {"channel": "#ops"}
    audit = await client.get("/api/v1/audit", headers=admin.headers)
    assert audit.status_code == 200
    assert "credential-part" not in audit.text


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"destination_config": {}}, {"destination_config.url"}),
        ({"destination_config": {"url": "ftp://example.org/x"}}, {"destination_config.url"}),
        (
            {"destination_config": {"url": "http://127.0.0.1:9/", "color": 1}},
            {"destination_config.color"},
        ),
        ({"secret": "whsec_not base64!"}, {"secret"}),
        ({"destination_type": "pager"}, {"destination_type"}),
        (
            {"destination_type": "slack", "destination_config": {"url": SLACK_HOOK}},
            {"destination_config.url", "secret"},
        ),
        (
            {"destination_type": "matrix", "destination_config": {"homeserver": "x"}},
            {"destination_config.homeserver", "destination_config.room_id", "secret"},
        ),
        ({"name": ""}, {"name"}),
    ],
)
async def test_invalid_destinations_are_400_naming_the_fields(
    client: httpx.AsyncClient, admin: User, body: dict[str, Any], fields: set[str]
) -> None:
    payload = {**webhook_body(), **body}
    if payload["destination_type"] != "webhook":
        payload.pop("secret")
    response = await client.post("/api/v1/destinations", json=payload, headers=admin.headers)
    assert fields <= error_fields(response)


@pytest.mark.parametrize(
    ("destination_type", "config", "secret", "field"),
    [
        ("webhook", {"url": "http://127.0.0.1:8080/hook"}, None, "destination_config.url"),
        ("webhook", {"url": "http://localhost/hook"}, None, "destination_config.url"),
        ("webhook", {"url": "http://10.0.0.1/hook"}, None, "destination_config.url"),
        ("webhook", {"url": "http://169.254.169.254/latest"}, None, "destination_config.url"),
        ("webhook", {"url": "http://[::1]:8080/"}, None, "destination_config.url"),
        ("slack", {}, "http://127.0.0.1:8080/services/x", "secret"),
        ("discord", {}, "http://10.0.0.1/api/webhooks/1/abc", "secret"),
        (
            "matrix",
            {"homeserver": "http://169.254.169.254", "room_id": "!r:example.org"},
            "syt_token",
            "destination_config.homeserver",
        ),
    ],
)
async def test_private_and_loopback_targets_are_refused_by_default(
    app_factory: AppFactory,
    destination_type: str,
    config: dict[str, Any],
    secret: str | None,
    field: str,
) -> None:
    from taskgate.identity.user_service import ensure_first_admin
    from tests.support.clients import ADMIN_PASSWORD

    async with app_factory(outbound={"allow_loopback": False}) as (app, client):
        async with app.state.db.transaction() as session:
            await ensure_first_admin(session, ADMIN_PASSWORD)
        admin = await login(client, "admin", ADMIN_PASSWORD)
        body = {"name": "x", "destination_type": destination_type, "destination_config": config}
        if secret:
            body["secret"] = secret
        response = await client.post("/api/v1/destinations", json=body, headers=admin.headers)
        assert error_fields(response) == {field}
        message = response.json()["error"]["details"][0]["message"]
        assert "/services/x" not in message
        assert "abc" not in message


async def test_patch_changes_only_what_is_sent(client: httpx.AsyncClient, admin: User) -> None:
    created = await create_destination(client, admin, webhook_body())
    path = f"/api/v1/destinations/{created['id']}"

    renamed = await client.patch(path, json={"name": "renamed"}, headers=admin.headers)
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "renamed"
    assert renamed.json()["has_secret"] is True
    assert renamed.json()["destination_config"] == created["destination_config"]

    cleared = await client.patch(path, json={"secret": None}, headers=admin.headers)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["has_secret"] is False
    bad = await client.patch(
        path, json={"destination_config": {"url": "gopher://x"}}, headers=admin.headers
    )
    assert error_fields(bad) == {"destination_config.url"}
    as_chat = await client.patch(path, json={"destination_type": "discord"}, headers=admin.headers)
    assert "secret" in error_fields(as_chat)
    null_name = await client.patch(path, json={"name": None}, headers=admin.headers)
    assert error_fields(null_name) == {"name"}

    deleted = await client.delete(path, headers=admin.headers)
    assert deleted.status_code == 204
    assert (await client.get(path, headers=admin.headers)).status_code == 404


async def test_another_users_destination_is_404(client: httpx.AsyncClient, admin: User) -> None:
    mine = await create_destination(client, admin, webhook_body())
    other = await create_user(client, admin, "mallory")
    path = f"/api/v1/destinations/{mine['id']}"
    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"name": "taken"}),
        ("DELETE", path, None),
        ("POST", f"{path}/test", None),
        ("GET", f"{path}/deliveries", None),
    ]:
        response = await client.request(method, url, json=body, headers=other.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
    listed = await client.get("/api/v1/destinations", headers=other.headers)
    assert listed.json()["results"] == []
    subscribe = await client.post(
        "/api/v1/subscriptions",
        json={"destination_id": mine["id"], "event_pattern": "*"},
        headers=other.headers,
    )
    assert subscribe.status_code == 404
    assert (await client.get(path, headers=admin.headers)).json()["name"] == "ops hook"


async def test_the_test_endpoint_sends_a_signed_event_now(
    client: httpx.AsyncClient, admin: User
) -> None:
    async with receiver(secret=SECRET) as hook:
        created = await create_destination(client, admin, webhook_body(hook.url()))
        response = await client.post(
            f"/api/v1/destinations/{created['id']}/test", headers=admin.headers
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["success"] is True
        assert result["status_code"] == 200
        assert result["error"] is None
        assert result["latency_ms"] >= 0
        assert result["response_excerpt"] == '{"ok": true}'
        [request] = hook.requests
    assert request.signature_ok is True
    assert request.json()["type"] == "destination.test"
    assert request.json()["payload"]["destination_id"] == created["id"]

    log = await client.get(
        f"/api/v1/destinations/{created['id']}/deliveries", headers=admin.headers
    )
    [entry] = log.json()["results"]
    assert entry["event_type"] == "destination.test"
    assert entry["status"] == "succeeded"
    assert entry["subscription_id"] is None
    assert [a["status_code"] for a in entry["attempt_log"]] == [200]


async def test_the_test_endpoint_reports_a_failing_endpoint(
    client: httpx.AsyncClient, admin: User
) -> None:
    async with receiver(always_fail=True, fail_status=500) as hook:
        created = await create_destination(client, admin, webhook_body(hook.url()))
        response = await client.post(
            f"/api/v1/destinations/{created['id']}/test", headers=admin.headers
        )
    result = response.json()
    assert (result["success"], result["status_code"], result["error"]) == (False, 500, "HTTP 500")
    assert result["response_excerpt"] == '{"error": "try again later"}'
    closed = await create_destination(client, admin, webhook_body("http://127.0.0.1:1/hook"))
    refused = await client.post(f"/api/v1/destinations/{closed['id']}/test", headers=admin.headers)
    assert refused.json()["success"] is False
    assert refused.json()["status_code"] is None
    assert refused.json()["error"]
    # A failed test is a report, not a delivery failure: the destination stays as it was.
    fetched = await client.get(f"/api/v1/destinations/{closed['id']}", headers=admin.headers)
    assert fetched.json()["consecutive_failures"] == 0
