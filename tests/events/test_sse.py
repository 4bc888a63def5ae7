"""Server-Sent Events: replay then live, resume without gap or duplicate, filters, privacy."""

from __future__ import annotations

import uuid

import httpx
import pytest

from taskgate.events.outbox import record_event
from tests.events.conftest import ServerFactory
from tests.events.support import LiveServer, create_task, default_project, emit, sse
from tests.support.clients import User


async def test_backlog_then_live_in_id_order(server: LiveServer, alice: User) -> None:
    session_id = uuid.uuid4()
    before = [await emit(server.db, alice.id, "chat.turn", session_id=session_id) for _ in range(3)]
    async with sse(server, alice, params={"session_id": str(session_id)}) as stream:
        replayed = await stream.events(3)
        assert [f.id for f in replayed] == before
        after = [
            await emit(server.db, alice.id, "chat.turn", session_id=session_id) for _ in range(2)
        ]
        live = await stream.events(2)
    assert [f.id for f in live] == after
    first = replayed[0]
    assert first.event == "chat.turn"
    assert first.data["id"] == before[0]
    assert first.data["session_id"] == str(session_id)
    assert first.data["type"] == "chat.turn"
    assert first.data["created_at"].endswith("Z")
    assert set(first.data) == {
        "id", "type", "created_at", "task_id", "run_id", "job_id", "execution_id",
        "session_id", "payload",
    }  # fmt: skip


async def test_open_feed_starts_now(server: LiveServer, alice: User) -> None:
    await emit(server.db, alice.id, "old.news")
    async with sse(server, alice) as stream:
        fresh = await emit(server.db, alice.id, "new.news")
        frame = await stream.event()
    assert (frame.id, frame.event) == (fresh, "new.news")


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_after_disconnect_gets_each_event_once(
    server: LiveServer, alice: User, how: str
) -> None:
    session_id = uuid.uuid4()
    session = {"session_id": str(session_id)}
    written = [await emit(server.db, alice.id, session_id=session_id) for _ in range(4)]
    async with sse(server, alice, params=session) as stream:
        seen = [f.id for f in await stream.events(2)]
    # Disconnected: what happens now must arrive on reconnect, exactly once.
    written += [await emit(server.db, alice.id, session_id=session_id) for _ in range(3)]
    resume_at = seen[-1]
    params = dict(session)
    header = None
    if how == "header":
        header = resume_at
    else:
        params["last_event_id"] = str(resume_at)
    async with sse(server, alice, params=params, last_event_id=header) as stream:
        seen += [f.id for f in await stream.events(5)]
        written.append(await emit(server.db, alice.id, session_id=session_id))
        seen.append((await stream.event()).id)
    assert seen == written


async def test_filters_and_types(server: LiveServer, alice: User) -> None:
    task = await create_task(server, alice)
    other_task = await create_task(server, alice)
    params = {"task_id": str(task), "types": "task.output.*,task.started"}
    async with sse(server, alice, params=params) as stream:
        await emit(server.db, alice.id, "task.started", task_id=other_task)
        await emit(server.db, alice.id, "task.progress", task_id=task)
        await emit(server.db, alice.id, "task.outputs", task_id=task)  # not under task.output.
        wanted = [
            await emit(server.db, alice.id, "task.started", task_id=task),
            await emit(server.db, alice.id, "task.output.delta", task_id=task),
        ]
        frames = await stream.events(2)
    assert [(f.id, f.event) for f in frames] == list(
        zip(wanted, ["task.started", "task.output.delta"], strict=True)
    )


async def test_another_users_events_never_appear(
    server: LiveServer, alice: User, bob: User
) -> None:
    session_id = uuid.uuid4()
    await emit(server.db, bob.id, "secret", session_id=session_id)
    async with sse(server, alice, params={"session_id": str(session_id)}) as stream:
        await emit(server.db, bob.id, "secret", session_id=session_id)
        await emit(server.db, None, "system", session_id=session_id)
        mine = await emit(server.db, alice.id, "mine", session_id=session_id)
        frame = await stream.event()
    assert (frame.id, frame.event) == (mine, "mine")


async def test_rolled_back_event_never_appears(server: LiveServer, alice: User) -> None:
    async def doomed_unit_of_work() -> None:
        async with server.db.transaction() as session:
            project = await default_project(session, alice.id)
            await record_event(session, "rolled.back", owner_id=alice.id, project_id=project)
            raise RuntimeError("abort the unit of work")

    async with sse(server, alice) as stream:
        with pytest.raises(RuntimeError):
            await doomed_unit_of_work()
        committed = await emit(server.db, alice.id, "committed")
        frame = await stream.event()
    assert (frame.id, frame.event) == (committed, "committed")


async def test_ping_comment_while_idle(server_factory: ServerFactory) -> None:
    async with server_factory(streams={"ping_seconds": 0.2}) as server:
        alice = await server.user("alice")
        async with sse(server, alice) as stream:
            frame = await stream.frame()
            while frame.comment is None:
                frame = await stream.frame()
    assert frame.comment == "ping"


async def test_bad_last_event_id_is_400(server: LiveServer, alice: User) -> None:
    headers = {**alice.headers, "Last-Event-ID": "abc"}
    response = await server.client.get("/api/v1/stream/sse", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    bad_types = await server.client.get(
        "/api/v1/stream/sse", params={"types": "a b"}, headers=alice.headers
    )
    assert bad_types.status_code == 400


async def test_stream_needs_authentication(server: LiveServer) -> None:
    response = await server.client.get("/api/v1/stream/sse")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_openapi_documents_the_streams(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/api/v1/stream/sse", "/api/v1/tasks/{task_id}/stream"):
        operation = spec["paths"][path]["get"]
        assert "text/event-stream" in operation["responses"]["200"]["content"]
        assert "Last-Event-ID" in {p["name"] for p in operation["parameters"]}
