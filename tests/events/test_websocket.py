"""WebSocket channels: subscribe, unsubscribe, resume, ownership, auth, slow clients."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from taskgate.events.bus import EventBus
from tests.events.conftest import ServerFactory
from tests.events.support import LiveServer, create_task, default_project, emit
from tests.support.clients import User
from tests.support.waiting import eventually


@asynccontextmanager
async def ws(
    server: LiveServer, user: User | None, path: str = "/api/v1/stream/ws", **options: Any
) -> AsyncIterator[ClientConnection]:
    headers = user.headers if user is not None else {}
    async with connect(server.ws_url + path, additional_headers=headers, **options) as conn:
        yield conn


async def receive(conn: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(conn.recv(), timeout))
    return message


async def subscribe(conn: ClientConnection, channel: str, **extra: Any) -> None:
    await conn.send(json.dumps({"action": "subscribe", "channel": channel, **extra}))
    assert await receive(conn) == {"type": "subscribed", "channel": channel}


async def close_code(conn: ClientConnection, timeout: float = 10) -> int | None:
    """Read (and drop) whatever is left until the server closes; its close code."""
    async with asyncio.timeout(timeout):
        try:
            while True:
                await conn.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


async def test_subscribe_receive_unsubscribe(server: LiveServer, alice: User) -> None:
    session_id = uuid.uuid4()
    async with ws(server, alice, "/api/v1/streams") as conn:
        await subscribe(conn, "events")
        await subscribe(conn, f"sessions:{session_id}")
        first = await emit(server.db, alice.id, "hello", session_id=session_id)
        frames = [await receive(conn), await receive(conn)]
        assert sorted(frame["channel"] for frame in frames) == [
            "events",
            f"sessions:{session_id}",
        ]
        for frame in frames:
            assert (frame["event"], frame["id"]) == ("hello", first)
            assert frame["payload"]["session_id"] == str(session_id)
        await conn.send(json.dumps({"action": "unsubscribe", "channel": "events"}))
        assert await receive(conn) == {"type": "unsubscribed", "channel": "events"}
        second = await emit(server.db, alice.id, "again", session_id=session_id)
        frame = await receive(conn)
        assert (frame["channel"], frame["id"]) == (f"sessions:{session_id}", second)


async def test_resume_a_task_channel_then_done(server: LiveServer, alice: User) -> None:
    task_id = await create_task(server, alice)
    channel = f"tasks:{task_id}"
    async with ws(server, alice) as conn:
        await subscribe(conn, channel)
        created = await receive(conn)
        assert created["event"] == "task.created"
    missed = [
        await emit(server.db, alice.id, "task.output.delta", task_id=task_id) for _ in range(3)
    ]
    async with ws(server, alice) as conn:
        await subscribe(conn, channel, last_event_id=created["id"])
        assert [(await receive(conn))["id"] for _ in missed] == missed
        response = await server.client.post(
            f"/api/v1/tasks/{task_id}/cancel", json={}, headers=alice.headers
        )
        assert response.status_code == 202
        frame = await receive(conn)
        while frame.get("event") != "done":
            frame = await receive(conn)
        assert frame == {
            "channel": channel,
            "event": "done",
            "id": None,
            "payload": {"reason": "task.cancelled"},
        }


async def test_others_subjects_read_as_not_found(
    server: LiveServer, alice: User, bob: User
) -> None:
    bobs = await create_task(server, bob)
    async with ws(server, alice) as conn:
        errors = []
        for channel in (f"tasks:{bobs}", f"tasks:{uuid.uuid4()}"):
            await conn.send(json.dumps({"action": "subscribe", "channel": channel}))
            errors.append(await receive(conn))
        assert errors[0]["type"] == errors[1]["type"] == "error"
        assert errors[0]["message"] == errors[1]["message"]
        await subscribe(conn, "tasks")
        await emit(server.db, bob.id, "task.progress", task_id=bobs)
        mine = await emit(server.db, alice.id, "task.progress", task_id=uuid.uuid4())
        frame = await receive(conn)
        assert (frame["channel"], frame["id"]) == ("tasks", mine)


async def test_bad_messages_get_error_frames(server: LiveServer, alice: User) -> None:
    async with ws(server, alice) as conn:
        for message in ("not json", "[]", '{"action": "dance"}', '{"action": "subscribe"}'):
            await conn.send(message)
            assert (await receive(conn))["type"] == "error"
        await conn.send(json.dumps({"action": "subscribe", "channel": "bogus"}))
        assert (await receive(conn))["type"] == "error"
        await conn.send(json.dumps({"action": "ping"}))
        assert await receive(conn) == {"type": "pong"}


async def test_token_in_query_authenticates(server: LiveServer, alice: User) -> None:
    created = await server.client.post(
        "/api/v1/api-keys", json={"name": "ws"}, headers=alice.headers
    )
    assert created.status_code == 201, created.text
    for token in (alice.token, created.json()["key"]):
        async with ws(server, None, f"/api/v1/stream/ws?token={token}") as conn:
            await subscribe(conn, "events")
            event_id = await emit(server.db, alice.id, "via.token")
            assert (await receive(conn))["id"] == event_id


@pytest.mark.parametrize("path", ["/api/v1/stream/ws", "/api/v1/stream/ws?token=not-a-token"])
async def test_unauthenticated_is_closed_4401(server: LiveServer, path: str) -> None:
    async with ws(server, None, path) as conn:
        assert await close_code(conn) == 4401


async def test_a_client_that_stops_reading_is_closed_1013(server_factory: ServerFactory) -> None:
    async with server_factory(streams={"ws_send_queue": 8}) as server:
        alice = await server.user("alice")
        bus: EventBus = server.app.state.bus
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuned megabytes
        sock.connect((host, int(port)))
        sock.setblocking(False)
        async with ws(server, alice, sock=sock, max_queue=1) as conn:
            await subscribe(conn, "events")
            # About 12 MiB the client never reads: more than the kernel and transport buffer.
            for _ in range(12):
                async with server.db.transaction() as session:
                    for _ in range(16):
                        await _record_big(session, alice.id)
            await eventually(
                lambda: bus.slots.active(alice.id) == 0,
                what="the server to give up on the slow client",
                timeout=30,
            )
            assert await close_code(conn, timeout=30) == 1013


async def _record_big(session: Any, owner: uuid.UUID) -> None:
    from taskgate.events.outbox import record_event

    project = await default_project(session, owner)
    blob = {"blob": "x" * 64 * 1024}
    await record_event(session, "big", owner_id=owner, project_id=project, payload=blob)
