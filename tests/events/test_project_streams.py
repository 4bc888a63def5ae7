"""Streams carry only the events of the request's project, live and replayed."""

from __future__ import annotations

import uuid

from tests.events.support import LiveServer, SseReader, emit, sse
from tests.events.test_websocket import close_code, receive, subscribe, ws
from tests.support.clients import User


async def _studio(server: LiveServer, user: User) -> uuid.UUID:
    response = await server.client.post(
        "/api/v1/projects", json={"name": "Studio"}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def _default(server: LiveServer, user: User) -> uuid.UUID:
    me = await server.client.get("/api/v1/users/me", headers=user.headers)
    return uuid.UUID(me.json()["default_project_id"])


async def test_sse_follows_the_request_project(server: LiveServer, alice: User) -> None:
    studio, default = await _studio(server, alice), await _default(server, alice)
    session_id = uuid.uuid4()
    before = await emit(server.db, alice.id, "studio.old", session_id=session_id, project_id=studio)
    params = {"session_id": str(session_id)}
    async with sse(server, alice, params=params) as mine:
        await emit(server.db, alice.id, "studio.new", session_id=session_id, project_id=studio)
        kept = await emit(server.db, alice.id, "mine", session_id=session_id, project_id=default)
        frame = await mine.event()
    # The default project's stream replayed nothing of the studio and skipped its live event.
    assert (frame.id, frame.event) == (kept, "mine")

    headers = {**alice.headers, "X-Tenant-ID": "studio"}
    async with server.client.stream(
        "GET", "/api/v1/stream/sse", params=params, headers=headers
    ) as response:
        assert response.status_code == 200
        reader = SseReader(response)
        first, second = await reader.events(2)
    assert (first.id, first.event) == (before, "studio.old")
    assert second.event == "studio.new"


async def test_websocket_feed_follows_the_request_project(server: LiveServer, alice: User) -> None:
    studio, default = await _studio(server, alice), await _default(server, alice)
    async with ws(server, alice, "/api/v1/streams?project_id=studio") as conn:
        await subscribe(conn, "events")
        await emit(server.db, alice.id, "elsewhere", project_id=default)
        wanted = await emit(server.db, alice.id, "here", project_id=studio)
        frame = await receive(conn)
    assert (frame["id"], frame["event"]) == (wanted, "here")


async def test_websocket_to_an_invisible_project_is_closed_4404(
    server: LiveServer, alice: User
) -> None:
    bob = await server.user("bob")
    await _studio(server, bob)
    for path in ("/api/v1/streams?project_id=studio", "/api/v1/streams?project_id=nope"):
        async with ws(server, alice, path) as conn:
            assert await close_code(conn) == 4404
