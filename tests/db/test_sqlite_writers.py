"""SQLite write transactions start at once or wait their turn; they never fail just because
another writer held the lock for a moment."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.models import AuditRecord
from taskgate.settings import Settings


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
