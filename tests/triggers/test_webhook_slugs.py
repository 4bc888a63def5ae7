"""A webhook source is reached by its id or by its slug: a slug shared by several owners
reaches the one whose secret signed the request, and an unknown name answers exactly as a
bad signature does."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx

from taskgate.clock import utcnow
from taskgate.governance.service import create_default_project
from taskgate.ids import new_id
from taskgate.models import User, WebhookSource
from taskgate.outbound.secretbox import secret_box
from taskgate.outbound.signing import standard_headers
from taskgate.settings import Settings
from taskgate.triggers.inbound import MAX_CANDIDATES
from taskgate.triggers.sources import seal
from tests.support.clients import User as Account
from tests.support.clients import create_user
from tests.triggers.test_webhooks import ORDER_BODY, make_source, sha256_signature
from tests.workflows.support import engine_app

SettingsFactory = Callable[..., Settings]


async def test_a_shared_slug_reaches_the_source_whose_secret_signed(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        bob = await create_user(client, env.admin, "bob")
        mine = await make_source(client, alice, slug="github")
        theirs = await make_source(client, bob, slug="github")
        assert mine["url"] == f"/api/v1/webhooks/{mine['id']}"  # the url stays the id form

        for source, user in ((mine, alice), (theirs, bob)):
            body = f'{{"type": "push.{user.username}"}}'.encode()
            signed = {"X-Hub-Signature-256": sha256_signature(source["secret"], body)}
            response = await client.post("/api/v1/webhooks/github", content=body, headers=signed)
            assert response.status_code == 202, response.text
            events = await client.get("/api/v1/events", headers=user.headers)
            assert [e["type"] for e in events.json()["results"]] == [f"push.{user.username}"]

            # The same signature again, by slug or by id, is a replay of this source's.
            for path in ("/api/v1/webhooks/github", source["url"]):
                replay = await client.post(path, content=body, headers=signed)
                assert replay.status_code == 409, replay.text
                assert replay.json()["error"]["code"] == "CONFLICT"

        # Standard Webhooks by slug: a retried webhook-id is recognised as the same message.
        headers = standard_headers(theirs["secret"], "msg_1", ORDER_BODY, time.time())
        first = await client.post("/api/v1/webhooks/github", content=ORDER_BODY, headers=headers)
        assert first.status_code == 202, first.text
        for path in ("/api/v1/webhooks/github", theirs["url"]):
            retry = await client.post(path, content=ORDER_BODY, headers=headers)
            assert retry.status_code == 200, retry.text
            assert retry.json()["event_id"] == first.json()["event_id"]
        alices = await client.get("/api/v1/events", headers=alice.headers)
        assert len(alices.json()["results"]) == 1

        # The id form still works, and an id reaches only its own source.
        body = b'{"type": "ping"}'
        signed = {"X-Webhook-Signature": sha256_signature(mine["secret"], body)}
        assert (await client.post(mine["url"], content=body, headers=signed)).status_code == 202
        other = {"X-Webhook-Signature": sha256_signature(mine["secret"], b'{"type": "pong"}')}
        wrong_id = await client.post(theirs["url"], content=b'{"type": "pong"}', headers=other)
        assert wrong_id.status_code == 401


async def test_an_unknown_source_answers_as_a_bad_signature(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        source = await make_source(client, alice, slug="shop")
        await make_source(client, alice, slug="strict", signature_scheme="standard")
        wrong = {"X-Webhook-Signature": sha256_signature("not-the-secret", ORDER_BODY)}
        stale = standard_headers("not-the-secret", "msg_1", ORDER_BODY, time.time() - 600)
        for headers in ({}, wrong, stale):
            answers = []
            for path in (
                "/api/v1/webhooks/shop",
                source["url"],
                "/api/v1/webhooks/strict",  # insists on Standard Webhooks: tells nothing either
                "/api/v1/webhooks/no-such-slug",
                f"/api/v1/webhooks/{uuid.uuid4()}",
            ):
                response = await client.post(path, content=ORDER_BODY, headers=headers)
                assert response.status_code == 401, (path, response.text)
                error = response.json()["error"]
                answers.append((error["code"], error["message"]))
            assert len(set(answers)) == 1, answers
            assert answers[0][0] == "UNAUTHORIZED"
        events = await client.get("/api/v1/events", headers=alice.headers)
        assert events.json()["results"] == []


async def test_a_slug_reaches_only_its_first_sources_by_creation(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        box = secret_box(env.app.state.settings)
        earlier = utcnow() - timedelta(minutes=1)
        async with env.db.transaction() as session:
            for n in range(MAX_CANDIDATES):
                user = User(username=f"sender{n}", password_hash="!")
                session.add(user)
                await session.flush()
                project = await create_default_project(session, user)
                source = WebhookSource(
                    id=new_id(),
                    owner_id=user.id,
                    project_id=project.id,
                    name="Busy",
                    slug="busy",
                    created_at=earlier,
                )
                seal(box, source, f"secret-of-sender-{n}")
                session.add(source)
        last = await make_source(client, alice, slug="busy")  # one too many for the slug

        body = b'{"type": "hello"}'
        first = {"X-Webhook-Signature": sha256_signature("secret-of-sender-0", body)}
        assert (
            await client.post("/api/v1/webhooks/busy", content=body, headers=first)
        ).status_code == 202
        signed = {"X-Webhook-Signature": sha256_signature(last["secret"], body)}
        by_slug = await client.post("/api/v1/webhooks/busy", content=body, headers=signed)
        assert by_slug.status_code == 401
        assert (await client.post(last["url"], content=body, headers=signed)).status_code == 202


async def _create(
    client: httpx.AsyncClient, user: Account, project: str | None = None, **body: object
) -> httpx.Response:
    headers = user.headers if project is None else {**user.headers, "X-Tenant-ID": project}
    return await client.post(
        "/api/v1/webhook-sources", json={"name": "A source", **body}, headers=headers
    )


async def _new_project(client: httpx.AsyncClient, user: Account, name: str) -> str:
    response = await client.post("/api/v1/projects", json={"name": name}, headers=user.headers)
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


async def test_a_slug_is_unique_within_its_project_only(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        bob = await create_user(client, env.admin, "bob")
        second = await _new_project(client, alice, "Second")

        # Two users' projects, and two projects of one user, may each have "a-source",
        # named outright or made from the name.
        for user, project, body in (
            (alice, None, {"slug": "a-source"}),
            (bob, None, {}),
            (alice, second, {}),
        ):
            response = await _create(client, user, project, **body)
            assert response.status_code == 201, response.text
            assert response.json()["slug"] == "a-source"

        # Within one project the slug is taken: named outright it is a 409 naming the
        # project; made from the name, it gets a suffix.
        taken = await _create(client, bob, slug="a-source")
        assert taken.status_code == 409, taken.text
        error = taken.json()["error"]
        assert error["code"] == "CONFLICT"
        assert error["message"] == (
            "This project already has a webhook source with the slug 'a-source'."
        )
        suffixed = await _create(client, alice, second)
        assert suffixed.status_code == 201, suffixed.text
        assert suffixed.json()["slug"].startswith("a-source-")

        listed = await client.get(
            "/api/v1/webhook-sources", headers={**alice.headers, "X-Tenant-ID": second}
        )
        assert sorted(s["slug"] for s in listed.json()["results"]) == [
            "a-source",
            suffixed.json()["slug"],
        ]


async def test_racing_creates_of_one_slug_in_one_project_end_201_and_409(
    settings_factory: SettingsFactory,
) -> None:
    async with engine_app(settings_factory, with_worker=False) as env:
        client, alice = env.client, env.alice
        for round in range(3):
            answers = await asyncio.gather(
                *(_create(client, alice, slug=f"race-{round}") for _ in range(4))
            )
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [201, 409, 409, 409], [a.text for a in answers]
        listed = await client.get("/api/v1/webhook-sources", headers=alice.headers)
        assert sorted(s["slug"] for s in listed.json()["results"]) == [
            "race-0",
            "race-1",
            "race-2",
        ]
