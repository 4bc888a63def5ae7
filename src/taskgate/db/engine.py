"""Engine creation: the one seam where SQLite and PostgreSQL differ."""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import in_greenlet

from taskgate.data_dir import private_database, private_dir
from taskgate.db.writers import WriteGate
from taskgate.settings import Settings

# SQLite write transactions start with BEGIN IMMEDIATE so two writers never deadlock on a
# lock upgrade; they are the units of work opened for writing, which queue on the engine's
# write gate first. Everything else (read units of work, a readiness probe on a bare
# connection) uses a plain deferred BEGIN and runs alongside them.
sqlite_write_transaction: ContextVar[bool] = ContextVar("sqlite_write_transaction", default=False)
_write_gates: WeakKeyDictionary[Engine, WriteGate] = WeakKeyDictionary()


def write_gate(engine: AsyncEngine) -> WriteGate | None:
    """The gate the engine's writers queue on: SQLite engines only."""
    return _write_gates.get(engine.sync_engine)


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings)
    # No pool_pre_ping: with asyncpg it costs two round trips (BEGIN, ROLLBACK) per checkout.
    # A connection that died with the server fails one statement instead, which marks the whole
    # pool stale, and recycling bounds the age of idle connections behind a proxy.
    return create_async_engine(
        url,
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.max_overflow,
        pool_recycle=1800,
        pool_timeout=settings.database.pool_timeout_seconds,
        connect_args={"timeout": settings.database.connect_timeout_seconds},
        echo=settings.database.echo,
    )


def _sqlite_engine(settings: Settings) -> AsyncEngine:
    private_dir(settings.data_dir)
    url = make_url(settings.database_url)
    memory = url.database in (None, "", ":memory:")
    if not memory and url.database is not None and not url.database.startswith("file:"):
        private_database(Path(url.database))
    engine = create_async_engine(
        url,
        echo=settings.database.echo,
        connect_args={"timeout": settings.database.sqlite_busy_timeout_ms / 1000},
        **({"poolclass": NullPool} if memory else {"pool_size": 8, "max_overflow": 8}),
    )
    busy = settings.database.sqlite_busy_timeout_ms
    _write_gates[engine.sync_engine] = WriteGate(settings.database.sqlite_write_hold_seconds)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "invalidate")
    def _on_invalidate(dbapi_connection: Any, _record: Any, _error: BaseException | None) -> None:
        # A connection is dropped (its unit of work was cut short, or the watchdog took it).
        # Python's sqlite3 keeps a closed connection's transaction, and the write lock with
        # it, for as long as one of its cursors lives, such as the cursor of a statement a
        # cancellation interrupted: roll back before it closes, so the lock goes with it.
        if in_greenlet():
            with contextlib.suppress(Exception):
                dbapi_connection.rollback()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if sqlite_write_transaction.get() else "BEGIN DEFERRED"
        )

    return engine


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"
