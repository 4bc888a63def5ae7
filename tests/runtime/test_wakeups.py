"""Waking workers in other processes: a commit that enqueues work is announced by NOTIFY once
committed (never for a rollback), and merged into fewer notifications under bursts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from taskgate.db.session import Database
from taskgate.runtime.notify import ANY_KIND, PG_JOBS_CHANNEL, PgListener
from taskgate.runtime.queue import enqueue
from taskgate.settings import Settings


class Heard:
    """What a listener on its own connection (another process, as far as PostgreSQL knows)
    received: one list of kinds per notification."""

    def __init__(self) -> None:
        self.notifications: list[list[str]] = []
        self.changed = asyncio.Event()

    def __call__(self, items: list[str]) -> None:
        self.notifications.append(items)
        self.changed.set()

    def kinds(self) -> set[str]:
        return {kind for items in self.notifications for kind in items}

    async def until(self, done: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not done():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def heard(settings: Settings) -> AsyncIterator[Heard]:
    if settings.is_sqlite:
        pytest.skip("NOTIFY is PostgreSQL's; SQLite runs in one process")
    heard = Heard()
    listener = PgListener(settings.database_url, {PG_JOBS_CHANNEL: heard}, lambda: None)
    running = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(10):
            await listener.connected.wait()
        yield heard
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_an_enqueued_job_wakes_a_listener_once_committed(db: Database, heard: Heard) -> None:
    async with db.transaction() as session:
        await enqueue(session, "probe.single", {})
    await heard.until(lambda: "probe.single" in heard.kinds())


async def test_a_rolled_back_job_wakes_nobody(db: Database, heard: Heard) -> None:
    async def refused() -> None:
        async with db.transaction() as session:
            await enqueue(session, "probe.rolled_back", {})
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        await refused()
    async with db.transaction() as session:
        await enqueue(session, "probe.after", {})
    await heard.until(lambda: "probe.after" in heard.kinds())
    assert "probe.rolled_back" not in heard.kinds()


async def test_a_burst_of_commits_is_announced_in_fewer_notifications(
    db: Database, heard: Heard
) -> None:
    kinds = {f"probe.burst.{n}" for n in range(40)}

    async def commit(kind: str) -> None:
        async with db.transaction() as session:
            await enqueue(session, kind, {})

    await asyncio.gather(*(commit(kind) for kind in kinds))
    await heard.until(lambda: kinds <= heard.kinds() or ANY_KIND in heard.kinds())
    assert len(heard.notifications) < len(kinds)
