"""Streams are a bounded resource: a cap per user, slots freed on disconnect, slow readers
bounded in memory and still served every event."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx

from taskgate.events.bus import EventBus
from taskgate.events.outbox import record_event
from tests.events.conftest import ServerFactory
from tests.events.support import default_project, emit, sse
from tests.support.waiting import eventually


async def test_cap_per_user_then_disconnect_frees_the_slot(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(streams={"max_streams_per_principal": 2}) as server:
        alice = await server.user("alice")
        bob = await server.user("bob")
        async with sse(server, alice), sse(server, alice):
            refused = await server.client.get("/api/v1/stream/sse", headers=alice.headers)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "RATE_LIMITED"
            assert refused.headers["retry-after"] == "1"
            async with sse(server, bob):
                pass  # someone else's streams do not count

        async def can_open() -> bool:
            async with server.client.stream(
                "GET", "/api/v1/stream/sse", headers=alice.headers
            ) as response:
                return response.status_code == 200

        await eventually(can_open, what="the closed streams to free their slots", timeout=5)


async def test_disconnect_while_idle_is_noticed(server_factory: ServerFactory) -> None:
    async with server_factory(streams={"ping_seconds": 3600}) as server:
        alice = await server.user("alice")
        bus: EventBus = server.app.state.bus
        own_client = httpx.AsyncClient(base_url=server.url)
        async with (
            own_client,
            own_client.stream("GET", "/api/v1/stream/sse", headers=alice.headers) as response,
        ):
            assert response.status_code == 200
            await eventually(lambda: bus.slots.active(alice.id) == 1, what="the stream")
        # No event and no ping will be written to it: only the socket closing tells.
        await eventually(
            lambda: bus.slots.active(alice.id) == 0 and bus.fanout.subscriber_count == 0,
            what="the server to notice the disconnect",
            timeout=1.5,
        )


async def test_a_stream_that_falls_behind_still_gets_everything_once(
    server_factory: ServerFactory,
) -> None:
    # Through the stream's own task (no direct writes): its inbox overflows, it re-reads.
    streams = {"subscriber_queue": 3, "direct_writes": False}
    async with server_factory(streams=streams) as server:
        alice = await server.user("alice")
        async with sse(server, alice) as stream:
            first = await emit(server.db, alice.id, "burst.start")
            assert (await stream.event()).id == first
            # One commit of 40 events overflows the 3-slot inbox: the stream re-reads them.
            async with server.db.transaction() as session:
                project = await default_project(session, alice.id)
                ids = [
                    (
                        await record_event(
                            session,
                            "burst",
                            owner_id=alice.id,
                            project_id=project,
                            payload={"i": i},
                        )
                    ).id
                    for i in range(40)
                ]
            frames = await stream.events(40)
            last = await emit(server.db, alice.id, "burst.end")
            tail = await stream.event()
        assert [frame.id for frame in frames] == ids
        assert [frame.data["payload"]["i"] for frame in frames] == list(range(40))
        assert tail.id == last


async def test_many_streams_share_one_read(server_factory: ServerFactory) -> None:
    async with server_factory(streams={"max_streams_per_principal": 50}) as server:
        alice = await server.user("alice")
        async with asyncio.TaskGroup() as group:
            readers = []
            contexts = [sse(server, alice) for _ in range(30)]
            for context in contexts:
                readers.append(await context.__aenter__())
            event_id = await emit(server.db, alice.id, "fanout")
            results = [group.create_task(reader.event()) for reader in readers]
        for context in contexts:
            await context.__aexit__(None, None, None)
        assert {result.result().id for result in results} == {event_id}


async def test_a_client_that_stops_reading_catches_up_in_order(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(streams={"subscriber_queue": 4}) as server:
        alice = await server.user("alice")
        host, port = server.url.removeprefix("http://").split(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuned megabytes
        sock.connect((host, int(port)))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        request = (
            f"GET /api/v1/stream/sse HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {alice.token}\r\n\r\n"
        )
        writer.write(request.encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        bus: EventBus = server.app.state.bus
        await eventually(lambda: bus.fanout.subscriber_count == 1, what="the stream")
        # About 8 MiB this client does not read yet: past every buffer on the way.
        ids: list[int] = []
        for _ in range(8):
            async with server.db.transaction() as session:
                project = await default_project(session, alice.id)
                for _ in range(16):
                    blob = {"blob": "x" * 64 * 1024}
                    event = await record_event(
                        session, "big", owner_id=alice.id, project_id=project, payload=blob
                    )
                    ids.append(event.id)
        last_frame = f"id: {ids[-1]}\n".encode()
        received = bytearray()
        try:
            async with asyncio.timeout(30):
                while last_frame not in received[-(1 << 20) - len(last_frame) :]:
                    received += await reader.read(1 << 20)
        finally:
            writer.close()
        assert _ids(bytes(received)) == ids


def _ids(raw: bytes) -> list[int]:
    return [int(match) for match in re.findall(rb"(?m)^id: (\d+)$", raw)]
