"""Periodic chores of every API process: persist API-key last-used times gathered in memory,
and drop idempotency records, stream tickets and webhook receipts past their lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import timedelta

import structlog
from fastapi import FastAPI
from sqlalchemy import delete

from taskgate.auth.principal import Authenticator
from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.identity import repository as identity_repo
from taskgate.identity.api_key_service import flush_last_used
from taskgate.models import IdempotencyRecord
from taskgate.triggers import repository as triggers_repo
from taskgate.triggers.inbound import REPLAY_WINDOW_SECONDS

log = structlog.get_logger()


class Housekeeping:
    name = "housekeeping"

    def __init__(
        self,
        db: Database,
        authenticator: Authenticator,
        *,
        flush_seconds: float = 5.0,
        purge_seconds: float = 300.0,
    ) -> None:
        self.db = db
        self.authenticator = authenticator
        self.flush_seconds = flush_seconds
        self.purge_seconds = purge_seconds
        self._task: asyncio.Task[None] | None = None

    async def start(self, app: FastAPI) -> None:
        self._task = asyncio.create_task(self._loop(), name="taskgate-housekeeping")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # What was used since the last flush is not lost on a clean shutdown.
        await self._guarded(flush_last_used(self.db, self.authenticator))

    async def purge_idempotency(self) -> int:
        async with self.db.transaction() as session:
            result = await session.execute(
                delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= utcnow())
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def purge_credentials(self) -> int:
        """Expired stream tickets, and webhook receipts past the replay window (a source
        that keeps receiving drops its own; this catches the ones that stopped)."""
        now = utcnow()
        receipts_before = now - timedelta(seconds=2 * REPLAY_WINDOW_SECONDS)
        async with self.db.transaction() as session:
            count = await identity_repo.forget_stream_tickets(session, now)
            count += await triggers_repo.forget_old_receipts(session, receipts_before)
        return count

    async def _loop(self) -> None:
        since_purge = self.purge_seconds  # purge once at start, then every purge_seconds
        while True:
            await self._guarded(flush_last_used(self.db, self.authenticator))
            if since_purge >= self.purge_seconds:
                since_purge = 0.0
                await self._guarded(self.purge_idempotency())
                await self._guarded(self.purge_credentials())
            await asyncio.sleep(self.flush_seconds)
            since_purge += self.flush_seconds

    async def _guarded(self, chore: Awaitable[object]) -> None:
        try:
            await chore
        except Exception:
            log.exception("housekeeping_failed")
