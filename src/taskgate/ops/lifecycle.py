"""Readiness, and starting the process's long-running parts once the database allows.

A process may start before its database is up or migrated (replicas rolled out ahead of
``taskgate migrate``): it then serves /health, answers /readiness with 503, and starts its
background parts (event bus, worker, scheduler, housekeeping) as soon as the database is ready,
instead of crashing in a restart loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import structlog
from fastapi import FastAPI
from sqlalchemy import text

from taskgate.db.migrate import pending_revisions
from taskgate.db.session import Database

log = structlog.get_logger()


class Component(Protocol):
    """A long-running part of the process (worker, scheduler, bus) tied to the lifespan."""

    name: str

    async def start(self, app: FastAPI) -> None: ...

    async def stop(self) -> None: ...


async def not_ready_reason(db: Database) -> str | None:
    """Why the database cannot serve this version yet; None when it can."""
    try:
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        pending = await pending_revisions(db.engine)
    except Exception:
        return "The database is unreachable."
    if pending:
        return f"Migrations are behind: {', '.join(sorted(pending))}."
    return None


class Components:
    """Starts the parts in order once the database is ready; stops them in reverse."""

    def __init__(
        self,
        db: Database,
        parts: Sequence[Component],
        poll_seconds: float = 2.0,
        stop_seconds: float = 10.0,
    ) -> None:
        self.db = db
        self.parts = list(parts)
        self.poll_seconds = poll_seconds
        self.stop_seconds = stop_seconds
        self.started: list[Component] = []
        self.running = False
        self._waiter: asyncio.Task[None] | None = None

    async def start(self, app: FastAPI) -> None:
        reason = await not_ready_reason(self.db)
        if reason is None:
            await self._start_all(app)
            return
        log.warning("database_not_ready", reason=reason, waiting_for="database")
        self._waiter = asyncio.create_task(self._start_when_ready(app), name="taskgate-start")

    async def _start_when_ready(self, app: FastAPI) -> None:
        while True:
            # Polling: the database has no way to tell us it came up or was migrated.
            if await not_ready_reason(self.db) is None:
                break
            await asyncio.sleep(self.poll_seconds)
        try:
            await self._start_all(app)
        except Exception:
            log.exception("component_start_failed")
            return
        log.info("database_ready", started=[part.name for part in self.started])

    async def _start_all(self, app: FastAPI) -> None:
        for part in self.parts:
            await part.start(app)
            self.started.append(part)
        self.running = True

    async def stop(self) -> None:
        if self._waiter is not None:
            self._waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waiter
        self.running = False
        while self.started:
            part = self.started.pop()
            # A part that does not stop must not keep the process from exiting. It is left
            # behind rather than awaited after a cancel: wait_for would wait for the
            # cancellation too, forever if the part does not honour it.
            stopping = asyncio.ensure_future(part.stop())
            done, _ = await asyncio.wait({stopping}, timeout=self.stop_seconds)
            if not done:
                stopping.cancel()
                log.error("component_stop_timed_out", component=part.name)
            elif (error := stopping.exception()) is not None:
                log.error("component_stop_failed", component=part.name, error=repr(error))
