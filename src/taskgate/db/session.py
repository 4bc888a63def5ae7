"""Units of work: one transaction, committed in one place, with after-commit hooks."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from taskgate.db.engine import sqlite_write_transaction, write_gate
from taskgate.db.writers import Hold

AfterCommit = Callable[[], Awaitable[None]]
CommitListener = Callable[[list[Any]], Awaitable[None]]
log = structlog.get_logger()
_BEGIN_ATTEMPTS = 8


def signal_after_commit(session: AsyncSession, channel: str, item: Any) -> None:
    """Queue ``item`` on ``channel``; the database's listeners get it once committed.

    This is how committed event ids reach the event bus and enqueued jobs wake workers,
    without services knowing either exists.
    """
    signals: dict[str, list[Any]] = session.info.setdefault("signals", {})
    signals.setdefault(channel, []).append(item)


def on_commit(session: AsyncSession, hook: AfterCommit) -> None:
    """Run ``hook`` once the session's transaction has committed (never on rollback)."""
    hooks: list[AfterCommit] = session.info.setdefault("after_commit", [])
    if hook not in hooks:
        hooks.append(hook)


def after_commit_in_background(session: AsyncSession, hook: AfterCommit) -> None:
    """Run ``hook`` once the session's transaction has committed, without the unit of work
    waiting for it: for announcements nobody needs to see done (waking other processes).
    ``Database.dispose`` waits for what is still running."""
    hooks: list[AfterCommit] = session.info.setdefault("background", [])
    if hook not in hooks:
        hooks.append(hook)


def on_rollback(session: AsyncSession, hook: AfterCommit) -> None:
    """Run ``hook`` after the session's transaction has rolled back (never on commit).

    For bookkeeping that must outlive a refused request (a failed login counted, a refusal
    audited): the hook opens its own unit of work once the request's locks are released,
    which on SQLite is the only order that does not wait on itself.
    """
    hooks: list[AfterCommit] = session.info.setdefault("after_rollback", [])
    hooks.append(hook)


async def _run_hooks(hooks: list[AfterCommit], kind: str) -> None:
    for hook in hooks:
        try:
            await hook()
        except Exception:
            log.exception(f"{kind}_hook_failed")


async def run_after_commit(session: AsyncSession) -> None:
    await _run_hooks(session.info.pop("after_commit", []), "after_commit")


async def _begin_immediate(session: AsyncSession) -> AsyncConnection:
    """Start a SQLite write transaction now. A writer of another process can make SQLite
    refuse BEGIN IMMEDIATE at once instead of waiting out its busy timeout; nothing has run
    yet, so trying again shortly is safe, and the caller's work never sees the refusal."""
    delay = 0.005
    for attempt in range(_BEGIN_ATTEMPTS):
        started = time.monotonic()
        try:
            return await session.connection()
        except OperationalError as error:
            waited = time.monotonic() - started
            # A refusal after waiting is the busy timeout doing its job: the lock is held.
            if "locked" not in str(error.orig) or waited > 0.1 or attempt == _BEGIN_ATTEMPTS - 1:
                raise
            log.warning("sqlite_begin_refused", attempt=attempt + 1)
        await session.rollback()
        await asyncio.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=True)
        self.listeners: defaultdict[str, list[CommitListener]] = defaultdict(list)
        self.write_gate = write_gate(engine)
        self._background: set[asyncio.Task[None]] = set()
        self._autocommit_sessions = async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"),
            expire_on_commit=False,
            autoflush=True,
        )

    def listen(self, channel: str, listener: CommitListener) -> None:
        self.listeners[channel].append(listener)

    async def _deliver_signals(self, session: AsyncSession) -> None:
        signals: dict[str, list[Any]] = session.info.pop("signals", {})
        for channel, items in signals.items():
            for listener in self.listeners.get(channel, ()):
                try:
                    await listener(items)
                except Exception:
                    log.exception("commit_listener_failed", channel=channel)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(
        self, *, write: bool = True, single_statement: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A session whose work is committed when the block ends without an error.

        ``single_statement``: the unit of work writes in one statement, atomic by itself, so
        on PostgreSQL it runs without BEGIN and COMMIT (two round trips fewer); reads before
        it see the latest commits, as in any transaction at READ COMMITTED. The hooks run as
        for any unit of work, once that statement has committed.
        """
        previous = sqlite_write_transaction.get()
        sqlite_write_transaction.set(write)
        autocommit = single_statement and self.dialect == "postgresql"
        gate = self.write_gate if write else None
        hold: Hold | None = None
        try:
            if gate is not None:
                # Before a connection is taken: queued writers hold none, so readers never
                # run short of connections behind them.
                hold = await gate.acquire()
            sessions = self._autocommit_sessions if autocommit else self.sessionmaker
            async with sessions() as session:
                if hold is not None:
                    hold.connection = await _begin_immediate(session)
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    if gate is not None and hold is not None:
                        gate.release(hold)  # the hooks below may write: let them
                        hold = None
                    session.info.pop("after_commit", None)
                    session.info.pop("background", None)
                    session.info.pop("signals", None)
                    await _run_hooks(session.info.pop("after_rollback", []), "after_rollback")
                    raise
                if gate is not None and hold is not None:
                    gate.release(hold)
                    hold = None
                session.info.pop("after_rollback", None)
                self._start_background(session.info.pop("background", []))
                await run_after_commit(session)
                await self._deliver_signals(session)
        finally:
            if gate is not None and hold is not None:
                gate.release(hold)
            sqlite_write_transaction.set(previous)

    def in_background(self, hook: AfterCommit) -> None:
        """Run ``hook`` (which may open units of work of its own) without waiting for it;
        ``dispose`` waits for what is still running."""
        self._start_background([hook])

    def _start_background(self, hooks: list[AfterCommit]) -> None:
        if hooks:
            task = asyncio.create_task(_run_hooks(hooks, "background"))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def dispose(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        await self.engine.dispose()
