"""SQLite write transactions start at once or wait their turn; they never fail just because
another writer held the lock for a moment."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, PendingRollbackError

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.models import AuditRecord
from taskgate.settings import Settings
from tests.conftest import AppFactory


def _hold_write_lock(settings: Settings, released: threading.Event) -> threading.Event:
    """Another process's writer: takes the write lock and keeps it until ``released``."""
    taken = threading.Event()
    path = make_url(settings.database_url).database
    assert path is not None

    def writer() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            taken.set()
            released.wait(timeout=30)
            connection.execute("COMMIT")
        finally:
            connection.close()

    threading.Thread(target=writer, daemon=True).start()
    assert taken.wait(timeout=10)
    return taken


async def test_a_write_refused_at_once_is_started_again(
    settings_factory: Callable[..., Settings],
) -> None:
    # With no busy timeout SQLite refuses a held lock at once, as it sometimes does anyway.
    settings = settings_factory(database={"sqlite_busy_timeout_ms": 0})
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock")
    db = Database(create_engine(settings))
    released = threading.Event()
    try:
        _hold_write_lock(settings, released)
        # Let go of the lock from the writer thread once our first attempt has been refused.
        threading.Timer(0.05, released.set).start()
        async with db.transaction() as session:
            session.add(AuditRecord(action="probe", outcome="success", detail={}))
        async with db.transaction(write=False) as session:
            count = await session.scalar(select(func.count()).select_from(AuditRecord))
        assert count == 1
    finally:
        released.set()
        await db.dispose()


async def test_a_lock_held_past_the_busy_timeout_is_an_error(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(database={"sqlite_busy_timeout_ms": 200})
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock")
    db = Database(create_engine(settings))
    released = threading.Event()
    try:
        _hold_write_lock(settings, released)
        with pytest.raises(OperationalError, match="locked"):
            async with db.transaction() as session:
                session.add(AuditRecord(action="probe", outcome="success", detail={}))
    finally:
        released.set()
        await db.dispose()


async def _audited(db: Database, action: str) -> int:
    async with db.transaction(write=False) as session:
        stmt = select(func.count()).select_from(AuditRecord).where(AuditRecord.action == action)
        return int(await session.scalar(stmt) or 0)


async def _stuck_writer(db: Database, entered: asyncio.Event) -> None:
    """A unit of work that writes, then waits for something that never comes."""
    async with db.transaction() as session:
        session.add(AuditRecord(action="stuck", outcome="success", detail={}))
        await session.flush()
        entered.set()
        await asyncio.Event().wait()


async def test_a_writer_stuck_holding_the_lock_is_logged_and_rolled_back(
    app_factory: AppFactory,
) -> None:
    overrides = {"sqlite_write_hold_seconds": 0.5, "sqlite_busy_timeout_ms": 200}
    async with app_factory(database=overrides) as (app, client):
        db: Database = app.state.db
        if db.dialect != "sqlite":
            pytest.skip("SQLite's write lock")
        entered = asyncio.Event()
        stuck = asyncio.create_task(_stuck_writer(db, entered), name="stuck-writer")
        try:
            await entered.wait()
            with structlog.testing.capture_logs() as logs:
                # Queued behind the stuck writer until the watchdog takes the lock from it.
                async with db.transaction() as session:
                    session.add(AuditRecord(action="after", outcome="success", detail={}))
            assert await _audited(db, "after") == 1
            assert await _audited(db, "stuck") == 0
            [line] = [line for line in logs if line["event"] == "sqlite_writer_stuck"]
            assert line["task"] == "stuck-writer"
            assert "_stuck_writer" in line["stack"]
            assert (await client.get("/readiness")).status_code == 200
        finally:
            stuck.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stuck
        # The stuck unit of work could not commit on the connection taken from it.
        assert await _audited(db, "stuck") == 0


async def test_writers_of_one_process_wait_their_turn_without_the_busy_timeout(
    settings_factory: Callable[..., Settings],
) -> None:
    # SQLite alone would refuse the second writer at once: it holds no busy timeout here.
    settings = settings_factory(database={"sqlite_busy_timeout_ms": 0})
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock")
    db = Database(create_engine(settings))
    try:
        first_in, let_go = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            async with db.transaction() as session:
                session.add(AuditRecord(action="first", outcome="success", detail={}))
                await session.flush()
                first_in.set()
                await let_go.wait()

        async def second() -> None:
            async with db.transaction() as session:
                session.add(AuditRecord(action="second", outcome="success", detail={}))

        holder = asyncio.create_task(first())
        await first_in.wait()
        waiting = asyncio.create_task(second())
        gate = db.write_gate
        assert gate is not None
        await asyncio.sleep(0)  # one step of the second writer: it queues
        assert gate.waiting == 1  # on the event loop, not in SQLite's busy handler
        let_go.set()
        await asyncio.gather(holder, waiting)
        assert await _audited(db, "first") == await _audited(db, "second") == 1
    finally:
        await db.dispose()


async def test_every_pooled_connection_carries_the_busy_timeout(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(database={"sqlite_busy_timeout_ms": 4321})
    if not settings.is_sqlite:
        pytest.skip("SQLite's busy timeout")
    db = Database(create_engine(settings))
    try:
        opened = 0
        all_open = asyncio.Event()
        readers = 16  # the whole pool, overflow included: connections opened under load

        async def reader() -> int:
            nonlocal opened
            async with db.transaction(write=False) as session:
                timeout = await session.scalar(text("PRAGMA busy_timeout"))
                opened += 1
                if opened == readers:
                    all_open.set()
                await all_open.wait()
                return int(timeout or 0)

        assert await asyncio.gather(*(reader() for _ in range(readers))) == [4321] * readers
    finally:
        await db.dispose()


async def _drop_mid_statement(db: Database, left_open: list[Any]) -> None:
    async with db.transaction() as session:
        session.add(AuditRecord(action="dropped", outcome="success", detail={}))
        await session.flush()
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        # What a cancellation can leave: a statement with rows still to read, whose cursor
        # outlives the unit of work (held by a traceback), and the connection invalidated.
        driver = raw.driver_connection
        assert driver is not None
        cursor = await driver.execute("SELECT 1 UNION ALL SELECT 2")
        await cursor.fetchone()
        left_open.append(cursor)
        await connection.invalidate()


async def test_a_connection_dropped_mid_statement_takes_its_lock_with_it(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(database={"sqlite_busy_timeout_ms": 200})
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock")
    db = Database(create_engine(settings))
    left_open: list[Any] = []
    try:
        with pytest.raises(PendingRollbackError):
            await _drop_mid_statement(db, left_open)
        async with db.transaction() as session:
            session.add(AuditRecord(action="next", outcome="success", detail={}))
        assert await _audited(db, "next") == 1
        assert await _audited(db, "dropped") == 0
    finally:
        left_open.clear()
        await db.dispose()
