"""What a job handler sees: the process's runtime and its own fenced unit of work."""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.session import Database, on_commit
from taskgate.runtime.leases import fenced_statement, lock_if_held, mark_done
from taskgate.runtime.services import RuntimeServices
from taskgate.settings import Settings

log = structlog.get_logger()
T = TypeVar("T")


def new_node_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Runtime:
    """One per worker: what its job handlers reach through ``ctx.runtime``. ``services`` are
    the process's shared services; a runtime given none makes its own and closes them."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        node_id: str,
        services: RuntimeServices | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.node_id = node_id
        self.services = services if services is not None else RuntimeServices(settings)
        self._owns_services = services is None
        # Reported in this node's row (e.g. the sandbox backend); read at every heartbeat.
        self.capabilities: dict[str, Any] = {}

    @classmethod
    def create(
        cls, settings: Settings, db: Database, services: RuntimeServices | None = None
    ) -> Runtime:
        return cls(settings, db, new_node_id(), services)

    async def aclose(self) -> None:
        if self._owns_services:
            await self.services.aclose()


class LeaseLost(Exception):
    """This worker no longer holds the job (its lease expired and it was retaken, it was
    released, or it finished): nothing it writes for the job may be committed."""


class RetryLater(Exception):
    """The handler asks to run again later: after ``delay_seconds``, or with backoff."""

    def __init__(self, reason: str, delay_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay_seconds = delay_seconds


class PermanentFailure(Exception):
    """The job can never succeed: it fails without a retry and the kind's on_dead hook runs."""


@dataclass
class JobContext:
    runtime: Runtime
    job_id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    fencing_token: int
    # True once an outcome written through complete() has committed.
    completed: bool = field(default=False, init=False)

    @asynccontextmanager
    async def transaction(self, *, fenced: bool = True) -> AsyncIterator[AsyncSession]:
        """A unit of work that commits only while this worker holds the job's lease.

        The queue row is checked (status leased, our fencing token) and locked first, so the
        lease cannot move to another worker before this commits; otherwise LeaseLost is raised
        and nothing is written. With ``fenced=False`` the caller's first statement must be
        :meth:`locked`, which does the same along with the unit of work's first read.
        """
        async with self.runtime.db.transaction() as session:
            if fenced:
                await self._fence(session)
            yield session

    async def locked(
        self,
        session: AsyncSession,
        stmt: Select[tuple[T]],
        params: Mapping[str, Any],
    ) -> T | None:
        """The first row of ``stmt`` (a SELECT of one entity, built once with bound
        ``params``), locked together with this job's queue row while this worker holds the
        lease: the fence and the first read of a unit of work in one round trip. None when
        ``stmt`` matches nothing; LeaseLost when the lease is gone."""
        fence = {"fence_job_id": self.job_id, "fence_token": self.fencing_token}
        found: T | None = await session.scalar(fenced_statement(stmt), {**params, **fence})
        if found is None:  # the lease is gone, or there is no such row: tell which
            await self._fence(session)
        return found

    async def _fence(self, session: AsyncSession) -> None:
        if not await lock_if_held(session, self.job_id, self.fencing_token):
            raise LeaseLost(f"job {self.job_id} is no longer held with token {self.fencing_token}")

    async def complete(self, session: AsyncSession) -> None:
        """Mark the job done in this unit of work, together with the handler's results."""
        if not await mark_done(session, self.job_id, self.fencing_token):
            raise LeaseLost(f"job {self.job_id} is no longer held")
        on_commit(session, self._committed)

    async def _committed(self) -> None:
        self.completed = True
