"""Where a worker claims jobs and records plain successes: its hot loop, kept cheap.

On PostgreSQL this is a small pool of the worker's own autocommit connections, so each claim
or batched completion is one statement and one round trip, with two session settings that
apply to these connections only (never to handlers' or the API's):

- ``synchronous_commit = off``: the commit does not wait for the WAL flush. If the database
  crashes and loses one, a claim reverts to queued or a completion to leased (its lease then
  expires), so the job runs again: at-least-once execution and fenced, exactly-once outcomes
  still hold. Enqueues and handlers' units of work stay fully durable.
- ``enable_sort = off``: the claim always walks ``ix_queue_jobs_claim`` in order and stops
  after LIMIT rows. With stale statistics (a burst into a table last analysed while quiet)
  the planner would otherwise read and sort every queued row, on every claim.

The pool pings no connection before use: that would be a round trip before every claim, on
the path from a wake-up to a running job. A connection that died with the server fails one
claim instead (the worker retries it shortly), which marks the pool's older connections
stale; recycling bounds the age of idle ones, as on the main engine.

On SQLite, writers are serialised anyway: one ``BEGIN IMMEDIATE`` unit of work on the shared
database does both.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from taskgate.db.session import Database
from taskgate.runtime import leases
from taskgate.settings import Settings

Held = Sequence[tuple[uuid.UUID, int]]
_SESSION_SETTINGS = {"synchronous_commit": "off", "enable_sort": "off"}


class Bookkeeping:
    def __init__(self, settings: Settings, db: Database) -> None:
        self._db = db
        self._engine: AsyncEngine | None = None
        if db.dialect == "postgresql":
            self._engine = create_async_engine(
                settings.database_url,
                pool_size=2,
                max_overflow=2,
                pool_recycle=1800,
                isolation_level="AUTOCOMMIT",
                echo=settings.database.echo,
                connect_args={"server_settings": _SESSION_SETTINGS},
            )

    async def cycle(
        self,
        finished: Held,
        *,
        node_id: str,
        limit: int,
        kinds: Sequence[str],
        lease_seconds: float,
    ) -> tuple[set[uuid.UUID], list[leases.Claimed]]:
        """Complete ``finished`` (fenced), then claim up to ``limit`` jobs."""
        if self._engine is None:
            async with self._db.transaction() as session:
                return await _cycle(session, finished, node_id, limit, kinds, lease_seconds)
        async with self._engine.connect() as connection:
            return await _cycle(connection, finished, node_id, limit, kinds, lease_seconds)

    async def complete(self, finished: Held) -> set[uuid.UUID]:
        done, _ = await self.cycle(finished, node_id="", limit=0, kinds=(), lease_seconds=0)
        return done

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()


async def _cycle(
    executor: leases.Executor,
    finished: Held,
    node_id: str,
    limit: int,
    kinds: Sequence[str],
    lease_seconds: float,
) -> tuple[set[uuid.UUID], list[leases.Claimed]]:
    done = await leases.complete_many(executor, finished)
    if limit <= 0:
        return done, []
    claimed = await leases.claim(
        executor, node_id=node_id, limit=limit, kinds=kinds, lease_seconds=lease_seconds
    )
    return done, claimed
