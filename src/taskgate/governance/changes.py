"""How a change to who may do what reaches every process by its next request.

Each process caches, per credential, the principal with its user's grants
(taskgate.auth.principal.Authenticator), and the projects requests name
(taskgate.governance.selection.ProjectDirectory), so that authorization costs no query on
the hot paths. A governance change (a role binding, a group or its members, an access rule,
a project's state, an instance administrator, a user disabled, an API key revoked) calls
``changed(session)`` in its own transaction: that bumps the one-row generation counter
(``governance_state``) and, once the transaction commits, the process drops those caches
before the response is sent, and announces the new generation to the other processes on the
event bus's transport (Redis pub/sub when configured, else PostgreSQL NOTIFY; a channel of
its own). A process that hears a generation it does not hold drops its caches too.

Announcements can be lost (a connection down), so each process also reads the counter every
``auth.governance_poll_seconds`` and drops its caches when it moved; cached principals
expire after ``auth.principal_cache_seconds`` anyway. A reconnect to the bus counts as a
change (what was announced meanwhile is unknown). A load that raced a change is never kept:
the caches discard an answer loaded across an invalidation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from fastapi import FastAPI
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.session import Database, signal_after_commit
from taskgate.governance.grants import current_generation
from taskgate.models import GovernanceState
from taskgate.settings import Settings

GOVERNANCE_CHANGED = "governance"
log = structlog.get_logger()


class Announcer(Protocol):
    """How generations travel between processes: one of the event bus's transports
    (``events/transports.py``) on a channel of its own, which the app hands in."""

    async def start(self, notify: Callable[[int | None], None], *, listen: bool) -> None: ...

    def publish(self, max_id: int) -> None: ...

    async def stop(self) -> None: ...


async def changed(session: AsyncSession) -> int:
    """Record a governance change in ``session``'s transaction; every process drops what it
    cached about grants once it commits. Returns the new generation."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(GovernanceState)
        .values(id=1, generation=1)
        .on_conflict_do_update(
            index_elements=[GovernanceState.id],
            set_={"generation": GovernanceState.generation + 1},
        )
        .returning(GovernanceState.generation)
    )
    generation = int((await session.execute(statement)).scalar_one())
    signal_after_commit(session, GOVERNANCE_CHANGED, generation)
    return generation


class GovernanceWatch:
    """A Component of each API process: drops the caches (``forget``) when this or another
    process committed a governance change."""

    name = "governance-watch"

    def __init__(
        self,
        settings: Settings,
        db: Database,
        forget: Callable[[], None],
        transport: Announcer,
    ) -> None:
        self.db = db
        self.forget = forget
        self.poll_seconds = settings.auth.governance_poll_seconds
        self.transport = transport
        # The generation the caches were last dropped for; None until first read.
        self.known: int | None = None
        self._poller: asyncio.Task[None] | None = None

    async def start(self, app: FastAPI) -> None:
        self.db.listen(GOVERNANCE_CHANGED, self._committed)
        await self.transport.start(self._announced, listen=True)
        if self.poll_seconds > 0:
            self._poller = asyncio.create_task(self._poll(), name="taskgate-governance-poll")

    async def stop(self) -> None:
        listeners = self.db.listeners.get(GOVERNANCE_CHANGED, [])
        if self._committed in listeners:
            listeners.remove(self._committed)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.transport.stop()

    async def _committed(self, generations: list[Any]) -> None:
        generation = max(int(g) for g in generations)
        self._drop(generation)
        self.transport.publish(generation)

    def _announced(self, generation: int | None) -> None:
        if generation is None or generation != self.known:
            self._drop(generation)

    def _drop(self, generation: int | None) -> None:
        if generation is not None:
            self.known = generation
        self.forget()

    async def _poll(self) -> None:
        while True:
            try:
                async with self.db.transaction(write=False) as session:
                    generation = await current_generation(session)
            except Exception as exc:
                log.warning("governance_poll_failed", error=str(exc)[:200])
            else:
                if self.known is None:
                    self.known = generation
                elif generation != self.known:
                    self._drop(generation)
            await asyncio.sleep(self.poll_seconds)
