"""PostgreSQL draws ids at insert, so a later id can commit first. Streams still deliver in
id order, skip nothing, and do not wait on an id that was rolled back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.events.bus import EventBus
from taskgate.events.outbox import record_event
from tests.events.conftest import ServerFactory
from tests.events.support import LiveServer, default_project, emit, sse
from tests.support.waiting import eventually


@pytest.fixture
async def pg_server(server_factory: ServerFactory) -> AsyncIterator[LiveServer]:
    # A grace far longer than the test: settling must come from the writer check.
    async with server_factory(streams={"gap_grace_seconds": 60}) as server:
        if server.db.dialect != "postgresql":
            pytest.skip("only PostgreSQL commits ids out of order (SQLite writes serially)")
        yield server


async def test_later_id_committed_first_waits_for_the_earlier(pg_server: LiveServer) -> None:
    server = pg_server
    alice = await server.user("alice")
    bus: EventBus = server.app.state.bus
    # A second engine: the slow transaction is "another process" the bus hears nothing from.
    other = Database(create_engine(server.app.state.settings))
    try:
        async with sse(server, alice) as stream:
            async with other.sessionmaker() as slow:
                project = await default_project(slow, alice.id)
                early = await record_event(slow, "early", owner_id=alice.id, project_id=project)
                late = await emit(server.db, alice.id, "late")
                assert early.id < late
                await eventually(lambda: bus.fanout.open_gaps > 0, what="the reader to see the gap")
                await slow.commit()
            # Nothing announced the slow commit; the reader's re-check finds it.
            frames = await stream.events(2)
        assert [(frame.id, frame.event) for frame in frames] == [
            (early.id, "early"),
            (late, "late"),
        ]
    finally:
        await other.dispose()


async def test_rolled_back_id_does_not_hold_later_events(pg_server: LiveServer) -> None:
    server = pg_server
    alice = await server.user("alice")
    bus: EventBus = server.app.state.bus
    other = Database(create_engine(server.app.state.settings))
    try:
        async with sse(server, alice) as stream:
            async with other.sessionmaker() as doomed:
                project = await default_project(doomed, alice.id)
                gone = await record_event(doomed, "never", owner_id=alice.id, project_id=project)
                kept = await emit(server.db, alice.id, "kept")
                assert gone.id < kept
                await eventually(lambda: bus.fanout.open_gaps > 0, what="the reader to see the gap")
                started = time.monotonic()
                await doomed.rollback()
            frame = await stream.event()
            waited = time.monotonic() - started
        assert (frame.id, frame.event) == (kept, "kept")
        assert waited < 5, f"the rolled-back id held the stream for {waited:.1f}s"
    finally:
        await other.dispose()
