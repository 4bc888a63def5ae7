"""Streams show an API key exactly the events its scopes let it list, and refuse what a
client may send that names no event."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.events.support import LiveServer, emit, sse
from tests.events.test_websocket import receive, subscribe, ws
from tests.support.clients import User


async def _refused(
    server: LiveServer, headers: dict[str, Any], params: dict[str, str] | None = None
) -> httpx.Response:
    """A stream request that must be refused; one that streams fails here instead of
    hanging the test."""
    request = server.client.build_request(
        "GET", "/api/v1/stream/sse", params=params, headers=headers
    )
    response = await server.client.send(request, stream=True)
    try:
        assert response.status_code != 200, "the stream was opened"
        await response.aread()
    finally:
        await response.aclose()
    return response


async def _key(server: LiveServer, user: User, *scopes: str) -> KeyUser:
    response = await server.client.post(
        "/api/v1/api-keys", json={"name": "limited", "scopes": list(scopes)}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return KeyUser(user.id, user.username, user.password, "", "", response.json()["key"])


@dataclass
class KeyUser(User):
    """The user, calling with one of its API keys."""

    key: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


async def test_a_key_that_may_list_no_events_streams_none(server: LiveServer, alice: User) -> None:
    await emit(server.db, alice.id, "job.output", task_id=uuid.uuid4(), payload={"text": "secret"})
    schedules_only = await _key(server, alice, "schedules:read")
    listed = await server.client.get("/api/v1/events", headers=schedules_only.headers)
    assert listed.status_code == 403

    replay = await _refused(
        server, schedules_only.headers, {"types": "job.output", "last_event_id": "0"}
    )
    assert replay.status_code == 403, replay.text
    assert "events:read" in replay.json()["error"]["message"]
    assert "secret" not in replay.text

    async with ws(server, schedules_only) as conn:
        await conn.send(
            json.dumps({"action": "subscribe", "channel": "events", "last_event_id": 0})
        )
        refused = await receive(conn)
    assert (refused["type"], refused["channel"]) == ("error", "events")
    assert "events:read" in refused["message"]


async def test_a_tasks_key_streams_task_events_only(server: LiveServer, alice: User) -> None:
    task_id = uuid.uuid4()
    await emit(server.db, alice.id, "order.created", payload={"card": "4242"})
    first = await emit(server.db, alice.id, "job.output", task_id=task_id)
    tasks_only = await _key(server, alice, "tasks:read")
    listed = await server.client.get("/api/v1/events", headers=tasks_only.headers)
    assert listed.status_code == 403

    async with sse(server, tasks_only, params={"last_event_id": "0"}) as stream:
        assert (await stream.event()).id == first  # replayed without the order event
        await emit(server.db, alice.id, "order.created", payload={"card": "4242"})
        live = await emit(server.db, alice.id, "task.completed", task_id=task_id)
        assert (await stream.event()).id == live  # and live without it

    async with ws(server, tasks_only) as conn:
        await subscribe(conn, "events", last_event_id=0)
        frames = [await receive(conn), await receive(conn)]
    assert [frame["id"] for frame in frames] == [first, live]

    # With events:read every event of the owner streams, as GET /events lists them.
    everything = await _key(server, alice, "events:read")
    async with sse(server, everything, params={"last_event_id": "0"}) as stream:
        assert (await stream.event()).event == "order.created"


async def test_a_last_event_id_past_64_bits_is_a_400(server: LiveServer, alice: User) -> None:
    huge = "99999999999999999999"
    task = {"task_id": str(uuid.uuid4())}
    header = await _refused(server, {**alice.headers, "Last-Event-ID": huge})
    assert header.status_code == 400, header.text
    assert header.json()["error"]["details"][0]["field"] == "Last-Event-ID"
    for params in ({"last_event_id": huge}, {**task, "last_event_id": huge}):
        query = await _refused(server, alice.headers, params)
        assert query.status_code == 400, query.text
        assert query.json()["error"]["details"][0]["field"] == "last_event_id"
    # A superscript two (latin-1 0xB2) passes str.isdigit() but is no number.
    superscript = await _refused(server, {**alice.headers, "Last-Event-ID": b"\xb2"})
    assert superscript.status_code == 400, superscript.text

    async with ws(server, alice) as conn:
        await conn.send(
            json.dumps({"action": "subscribe", "channel": "events", "last_event_id": int(huge)})
        )
        refused = await receive(conn)
        assert refused["type"] == "error"
        assert "last_event_id" in refused["message"]
        await subscribe(conn, "events", last_event_id=2**63 - 1)  # the largest id is fine
