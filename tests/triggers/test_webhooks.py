"""Inbound webhooks: signed as senders sign them, refused when not, replays recognised."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable

import httpx
from sqlalchemy import select

from taskgate.models import WebhookSource
from taskgate.outbound.signing import standard_headers
from taskgate.settings import Settings
from tests.support.clients import User, create_user
from tests.workflows.support import create_workflow, engine_app, wait_execution

SettingsFactory = Callable[..., Settings]

ORDER_PROCESSOR = {
    "name": "Order Processor",
    "slug": "order-processor",
    "enabled": True,
    "trigger_type": "webhook",
    "trigger_config": {"event_type": "order.created"},
    "graph": {
        "nodes": [
            {
                "id": "step_1",
                "type": "logging",
                "config": {"message": "Order received: {{ event.payload.order_id }}"},
            }
        ]
    },
}
# Django Automate's documented webhook body.
ORDER_BODY = json.dumps(
    {
        "event_type": "order.created",
        "data": {"order_id": "ORD-123", "amount": 99.99, "customer_name": "John Doe"},
    }
).encode()


def sha256_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def make_source(client: httpx.AsyncClient, user: User, **extra: object) -> dict[str, str]:
    response = await client.post(
        "/api/v1/webhook-sources", json={"name": "Stripe", **extra}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


async def test_signed_webhook_runs_the_order_workflow(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        source = await make_source(client, alice, slug="stripe")
        assert source["url"] == f"/api/v1/webhooks/{source['id']}"
        assert source["secret"].startswith("whsec_")
        await create_workflow(client, alice, ORDER_PROCESSOR)

        response = await client.post(
            source["url"],
            content=ORDER_BODY,
            headers={
                "content-type": "application/json",
                "X-Webhook-Signature": sha256_signature(source["secret"], ORDER_BODY),
            },
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert accepted["message"] == "Event accepted for processing"
        assert accepted["trace_id"] == response.headers["x-trace-id"]
        [execution_id] = accepted["execution_ids"]

        detail = await wait_execution(client, alice, execution_id)
        assert detail["status"] == "SUCCESS"
        assert detail["trigger"] == "webhook"
        assert detail["context"]["source"] == "stripe"
        assert detail["steps"][0]["output_data"]["message"] == "Order received: ORD-123"

        listed = await client.get("/api/v1/executions", headers=alice.headers)
        assert [e["id"] for e in listed.json()["results"]] == [execution_id]
        assert listed.json()["results"][0]["trigger_event_id"] == accepted["event_id"]
        events = await client.get("/api/v1/events?type=order.created", headers=alice.headers)
        assert events.json()["results"][0]["payload"]["order_id"] == "ORD-123"

        # X-Signature is accepted too, and a bare body becomes the payload itself.
        bare = json.dumps({"order_id": "ORD-9"}).encode()
        response = await client.post(
            source["url"],
            content=bare,
            headers={
                "X-Signature": sha256_signature(source["secret"], bare),
                "X-Event-Type": "order.created",
            },
        )
        assert response.status_code == 202
        detail = await wait_execution(client, alice, response.json()["execution_ids"][0])
        assert detail["steps"][0]["output_data"]["message"] == "Order received: ORD-9"


async def test_bad_or_missing_signatures_are_401(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        source = await make_source(client, alice, slug="shop")
        wrong = sha256_signature("not-the-secret-at-all", ORDER_BODY)
        tampered = sha256_signature(source["secret"], ORDER_BODY + b" ")
        for headers in (
            {},
            {"X-Webhook-Signature": wrong},
            {"X-Webhook-Signature": tampered},
            {"X-Webhook-Signature": "sha256=zz"},
        ):
            response = await client.post(source["url"], content=ORDER_BODY, headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
        unknown = await client.post("/api/v1/webhooks/nope", content=ORDER_BODY)
        assert unknown.status_code == 401  # as a bad signature: no oracle of names
        events = await client.get("/api/v1/events", headers=alice.headers)
        assert events.json()["results"] == []

        big = b'{"x": "' + b"a" * (1024 * 1024 + 10) + b'"}'
        response = await client.post(
            source["url"],
            content=big,
            headers={"X-Webhook-Signature": sha256_signature(source["secret"], big)},
        )
        assert response.status_code == 413

        await client.patch(
            f"/api/v1/webhook-sources/{source['id']}",
            json={"enabled": False},
            headers=alice.headers,
        )
        signed = {"X-Webhook-Signature": sha256_signature(source["secret"], ORDER_BODY)}
        disabled = await client.post(source["url"], content=ORDER_BODY, headers=signed)
        assert disabled.status_code == 401


async def test_standard_webhooks_with_replay_protection(settings_factory: SettingsFactory) -> None:
    async with engine_app(settings_factory) as env:
        client, alice = env.client, env.alice
        source = await make_source(client, alice, slug="svix", signature_scheme="standard")
        workflow_id = await create_workflow(client, alice, ORDER_PROCESSOR)
        headers = standard_headers(source["secret"], "msg_1", ORDER_BODY, time.time())
        first = await client.post(source["url"], content=ORDER_BODY, headers=headers)
        assert first.status_code == 202, first.text

        replay = await client.post(source["url"], content=ORDER_BODY, headers=headers)
        assert replay.status_code == 200
        assert replay.json()["event_id"] == first.json()["event_id"]
        assert replay.json()["execution_ids"] == []

        old = standard_headers(source["secret"], "msg_2", ORDER_BODY, time.time() - 600)
        stale = await client.post(source["url"], content=ORDER_BODY, headers=old)
        assert stale.status_code == 401
        signed_plain = {"X-Webhook-Signature": sha256_signature(source["secret"], ORDER_BODY)}
        plain = await client.post(source["url"], content=ORDER_BODY, headers=signed_plain)
        assert plain.status_code == 401  # this source insists on Standard Webhooks

        await wait_execution(client, alice, first.json()["execution_ids"][0])
        listed = await client.get(
            f"/api/v1/executions?workflow={workflow_id}", headers=alice.headers
        )
        assert len(listed.json()["results"]) == 1


async def test_webhook_sources_keep_their_secret_write_only(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice, admin = env.client, env.alice, env.admin
        chosen = "my-own-shared-secret-123"
        source = await make_source(client, alice, slug="github", secret=chosen)
        assert source["secret"] == chosen
        url = f"/api/v1/webhook-sources/{source['id']}"
        for response in (
            await client.get(url, headers=alice.headers),
            await client.get("/api/v1/webhook-sources", headers=alice.headers),
        ):
            assert response.status_code == 200
            assert chosen not in response.text
            assert '"secret"' not in response.text
        async with env.db.transaction(write=False) as session:
            row = await session.scalar(
                select(WebhookSource).where(WebhookSource.id == uuid.UUID(source["id"]))
            )
        assert row is not None
        assert chosen.encode() not in row.secret_ciphertext

        taken = await client.post(
            "/api/v1/webhook-sources", json={"name": "x", "slug": "github"}, headers=alice.headers
        )
        assert taken.status_code == 409
        bob = await create_user(client, admin, "bob")
        assert (await client.get(url, headers=bob.headers)).status_code == 404

        rotated = "rotated-shared-secret-456"
        response = await client.patch(url, json={"secret": rotated}, headers=alice.headers)
        assert response.status_code == 200
        body = b'{"type": "push"}'
        old = await client.post(
            source["url"],
            content=body,
            headers={"X-Hub-Signature-256": sha256_signature(chosen, body)},
        )
        assert old.status_code == 401
        new = await client.post(
            source["url"],
            content=body,
            headers={"X-Hub-Signature-256": sha256_signature(rotated, body)},
        )
        assert new.status_code == 202
        events = await client.get("/api/v1/events", headers=alice.headers)
        assert events.json()["results"][0]["type"] == "push"

        assert (await client.delete(url, headers=alice.headers)).status_code == 204
        gone = await client.post(
            source["url"],
            content=body,
            headers={"X-Hub-Signature-256": sha256_signature(rotated, body)},
        )
        assert gone.status_code == 401
