"""A timeless signed webhook is refused when sent again within the window, by every API
process; sources are named per owner and their urls name them by id."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import update

from taskgate.clock import utcnow
from taskgate.models import WebhookReceipt
from taskgate.outbound.signing import standard_headers
from taskgate.settings import Settings
from tests.support.clients import create_user
from tests.triggers.test_webhooks import ORDER_BODY, make_source, sha256_signature
from tests.workflows.support import engine_app

SettingsFactory = Callable[..., Settings]


async def test_a_replayed_signature_is_refused_by_every_process(
    settings_factory: SettingsFactory,
) -> None:
    async with (
        engine_app(settings_factory, with_worker=False) as first,
        engine_app(settings_factory, with_worker=False) as second,
    ):
        source = await make_source(first.client, first.alice, slug="shop")
        signed = {"X-Webhook-Signature": sha256_signature(source["secret"], ORDER_BODY)}
        accepted = await first.client.post(source["url"], content=ORDER_BODY, headers=signed)
        assert accepted.status_code == 202, accepted.text

        for env in (first, second):  # the other API process knows it too
            replay = await env.client.post(source["url"], content=ORDER_BODY, headers=signed)
            assert replay.status_code == 409, replay.text
            error = replay.json()["error"]
            assert error["code"] == "CONFLICT"
            assert "replay" in error["message"]
        events = await first.client.get("/api/v1/events", headers=first.alice.headers)
        assert [e["id"] for e in events.json()["results"]] == [accepted.json()["event_id"]]

        # A different body is a different request; the Standard Webhooks form is unaffected.
        other = b'{"event_type": "order.created", "data": {"order_id": "ORD-2"}}'
        headers = {"X-Webhook-Signature": sha256_signature(source["secret"], other)}
        assert (
            await first.client.post(source["url"], content=other, headers=headers)
        ).status_code == 202
        standard = standard_headers(source["secret"], "msg_1", ORDER_BODY, time.time())
        response = await second.client.post(source["url"], content=ORDER_BODY, headers=standard)
        assert response.status_code == 202, response.text

        # Past the window the signature is forgotten: housekeeping drops it, and a sender
        # may repeat the same body.
        async with first.db.transaction() as session:
            await session.execute(
                update(WebhookReceipt).values(received_at=utcnow() - timedelta(seconds=601))
            )
        assert await first.app.state.housekeeping.purge_credentials() >= 3
        again = await second.client.post(source["url"], content=ORDER_BODY, headers=signed)
        assert again.status_code == 202, again.text


async def test_slugs_are_per_project_and_urls_name_the_source(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        bob = await create_user(client, env.admin, "bob")
        mine = await make_source(client, alice, slug="a-source")
        theirs = await make_source(client, bob, slug="a-source")  # tells bob nothing
        assert theirs["slug"] == "a-source"
        assert mine["url"] != theirs["url"]
        assert theirs["url"] == f"/api/v1/webhooks/{theirs['id']}"
        derived = await make_source(client, bob, name="A Source")
        assert derived["slug"].startswith("a-source-")

        again = await client.post(
            "/api/v1/webhook-sources", json={"name": "x", "slug": "a-source"}, headers=alice.headers
        )
        assert again.status_code == 409
        assert "This project already has" in again.json()["error"]["message"]

        # Each URL reaches its own source and owner.
        for source, user in ((mine, alice), (theirs, bob)):
            body = f'{{"type": "hello.{user.username}"}}'.encode()
            signed = {"X-Webhook-Signature": sha256_signature(source["secret"], body)}
            response = await client.post(source["url"], content=body, headers=signed)
            assert response.status_code == 202, response.text
            events = await client.get("/api/v1/events", headers=user.headers)
            assert [e["type"] for e in events.json()["results"]] == [f"hello.{user.username}"]
        unknown = await client.post(f"/api/v1/webhooks/{uuid.uuid4()}", content=b"{}")
        assert unknown.status_code == 401
