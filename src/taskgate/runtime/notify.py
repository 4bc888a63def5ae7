"""Waking workers across processes: PostgreSQL NOTIFY after commit, LISTEN on its own connection.

Inside one process the in-process signals of ``Database.listen`` already do this; these carry
the same news to workers in other processes. Both are only hints: workers also poll.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from functools import partial

import asyncpg
import structlog
from sqlalchemy import TextClause, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from taskgate.db.session import after_commit_in_background

PG_JOBS_CHANNEL = "taskgate_jobs"
PG_CANCEL_CHANNEL = "taskgate_cancel"
ANY_KIND = "*"
# NOTIFY payloads must stay under 8000 bytes; beyond this we just say "something".
_MAX_PAYLOAD = 7000
_PENDING = "pg_notify"
log = structlog.get_logger()


def notify_after_commit(session: AsyncSession, channel: str, item: str) -> None:
    """Send ``NOTIFY channel`` with ``item`` once the session commits (PostgreSQL only).

    It goes out on another pooled connection after the commit, so the hot write transaction
    never carries it (NOTIFY takes a global lock at commit time), and the committer does not
    wait for it. While one send is in flight, what later commits announce is merged into the
    next: a burst of commits costs a few NOTIFYs, not one each.
    """
    engine = session.bind
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        return
    pending: dict[str, set[str]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = {}
        after_commit_in_background(session, partial(_hand_over, engine, pending))
    pending.setdefault(channel, set()).add(item)


class _Sender:
    """What an engine has still to send, and whether a send is in flight."""

    def __init__(self) -> None:
        self.pending: dict[str, set[str]] = {}
        self.busy = False


_SENDERS: weakref.WeakKeyDictionary[AsyncEngine, _Sender] = weakref.WeakKeyDictionary()


async def _hand_over(engine: AsyncEngine, pending: dict[str, set[str]]) -> None:
    sender = _SENDERS.get(engine)
    if sender is None:
        sender = _SENDERS[engine] = _Sender()
    for channel, items in pending.items():
        sender.pending.setdefault(channel, set()).update(items)
    if sender.busy:
        return  # the send in flight goes on with these
    sender.busy = True
    try:
        while sender.pending:
            batch, sender.pending = sender.pending, {}
            await _send(engine, batch)
    finally:
        sender.busy = False


async def _send(engine: AsyncEngine, pending: dict[str, set[str]]) -> None:
    params: dict[str, str] = {}
    for n, (channel, items) in enumerate(sorted(pending.items())):
        payload = ",".join(sorted(items))
        params[f"c{n}"], params[f"p{n}"] = channel, payload
        if len(payload) > _MAX_PAYLOAD:
            params[f"p{n}"] = ANY_KIND
    # Autocommit: one round trip, where BEGIN, the notifications and COMMIT made three.
    async with engine.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(_notify_statement(len(pending)), params)


@functools.lru_cache(maxsize=8)
def _notify_statement(channels: int) -> TextClause:
    calls = ", ".join(f"pg_notify(:c{n}, :p{n})" for n in range(channels))
    return text(f"SELECT {calls}")


def asyncpg_dsn(database_url: str) -> str:
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PgListener:
    """LISTEN on a dedicated connection, reconnecting after failures.

    ``handlers`` maps a channel to a callback taking the payload's items. ``on_reconnect``
    runs after every (re)connection, since notifications sent while we were away are lost.
    """

    def __init__(
        self,
        database_url: str,
        handlers: dict[str, Callable[[list[str]], None]],
        on_reconnect: Callable[[], None],
        *,
        ping_seconds: float = 30.0,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._handlers = handlers
        self._on_reconnect = on_reconnect
        self._ping_seconds = ping_seconds
        self.connected = asyncio.Event()

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            handler(payload.split(","))

    async def run(self) -> None:
        """Listen until cancelled."""
        delay = 0.5
        while True:
            try:
                await self._listen_once()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("queue_listener_lost", error=repr(exc), retry_in=delay)
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _listen_once(self) -> None:
        connection: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=10)
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _conn: closed.set())
        try:
            for channel in self._handlers:
                await connection.add_listener(channel, self._dispatch)
            self.connected.set()
            self._on_reconnect()
            while not closed.is_set():
                try:
                    await asyncio.wait_for(closed.wait(), timeout=self._ping_seconds)
                except TimeoutError:
                    await connection.fetchval("SELECT 1", timeout=10)
        finally:
            if not connection.is_closed():
                await connection.close(timeout=5)
