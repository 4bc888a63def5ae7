"""Stream tickets: a browser connects with a short-lived, single-use ticket instead of a
credential in the URL; the ticket carries its issuer's identity and scopes."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from taskgate.clock import utcnow
from taskgate.models import StreamTicket
from tests.events.support import LiveServer, SseReader, create_task, emit
from tests.events.test_stream_scopes import _key
from tests.events.test_websocket import close_code, receive, subscribe, ws
from tests.support.clients import User


async def _ticket(server: LiveServer, headers: dict[str, str]) -> str:
    response = await server.client.post("/api/v1/stream/tickets", headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"ticket", "expires_at"}
    ticket: str = body["ticket"]
    return ticket


async def _open(server: LiveServer, params: dict[str, Any]) -> httpx.Response:
    """A stream request with no header credential; the caller closes the response."""
    request = server.client.build_request("GET", "/api/v1/stream/sse", params=params)
    return await server.client.send(request, stream=True)


async def _status(server: LiveServer, params: dict[str, Any]) -> int:
    response = await _open(server, params)
    await response.aclose()
    return response.status_code


async def test_a_ticket_opens_one_stream_once(server: LiveServer, alice: User) -> None:
    anonymous = await server.client.post("/api/v1/stream/tickets")
    assert anonymous.status_code == 401
    assert (await _status(server, {"ticket": "tgst_made-up"})) == 401

    session_id = uuid.uuid4()
    written = await emit(server.db, alice.id, "chat.turn", session_id=session_id)
    ticket = await _ticket(server, alice.headers)
    async with server.db.transaction(write=False) as session:
        row = await session.scalar(select(StreamTicket))
    assert row is not None
    assert row.token_hash != ticket  # stored hashed

    response = await _open(server, {"ticket": ticket, "session_id": str(session_id)})
    try:
        assert response.status_code == 200
        assert (await SseReader(response).event()).id == written
    finally:
        await response.aclose()
    assert (await _status(server, {"ticket": ticket, "session_id": str(session_id)})) == 401

    # The WebSocket takes one too, once.
    ticket = await _ticket(server, alice.headers)
    async with ws(server, None, f"/api/v1/stream/ws?ticket={ticket}") as conn:
        await subscribe(conn, f"sessions:{session_id}")
        assert (await receive(conn))["id"] == written
    async with ws(server, None, f"/api/v1/stream/ws?ticket={ticket}") as conn:
        assert await close_code(conn) == 4401


async def test_a_ticket_is_its_issuer_with_its_scopes(
    server: LiveServer, alice: User, bob: User
) -> None:
    bobs_task = await create_task(server, bob)
    ticket = await _ticket(server, alice.headers)
    assert (await _status(server, {"ticket": ticket, "task_id": str(bobs_task)})) == 404

    schedules_only = await _key(server, alice, "schedules:read")
    ticket = await _ticket(server, schedules_only.headers)
    assert (await _status(server, {"ticket": ticket, "last_event_id": "0"})) == 403
    ticket = await _ticket(server, schedules_only.headers)
    async with ws(server, None, f"/api/v1/stream/ws?ticket={ticket}") as conn:
        await conn.send(json.dumps({"action": "subscribe", "channel": "events"}))
        refused = await receive(conn)
    assert refused["type"] == "error"
    assert "events:read" in refused["message"]


async def test_expired_or_revoked_tickets_are_refused(server: LiveServer, alice: User) -> None:
    expired = await _ticket(server, alice.headers)
    async with server.db.transaction() as session:
        await session.execute(update(StreamTicket).values(expires_at=utcnow() - timedelta(1)))
    assert (await _status(server, {"ticket": expired})) == 401

    key = await _key(server, alice, "*")
    ticket = await _ticket(server, key.headers)
    key_id = (await server.client.get("/api/v1/api-keys", headers=alice.headers)).json()
    [listed] = [k for k in key_id["results"] if key.key.startswith(f"tg_{k['prefix']}")]
    revoked = await server.client.delete(f"/api/v1/api-keys/{listed['id']}", headers=alice.headers)
    assert revoked.status_code == 204
    assert (await _status(server, {"ticket": ticket})) == 401

    # Housekeeping drops what expired.
    await _ticket(server, alice.headers)
    async with server.db.transaction() as session:
        await session.execute(update(StreamTicket).values(expires_at=utcnow() - timedelta(1)))
    assert await server.app.state.housekeeping.purge_credentials() >= 1
    async with server.db.transaction(write=False) as session:
        assert (await session.scalar(select(StreamTicket))) is None
