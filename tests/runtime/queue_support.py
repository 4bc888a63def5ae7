"""Helpers for the queue and worker tests: run a worker, poll a condition, read job rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, select, update

from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.jobs import Worker
from taskgate.runtime.context import Runtime
from taskgate.runtime.handlers import JobKind
from taskgate.runtime.queue import jobs


@asynccontextmanager
async def running_worker(
    runtime: Runtime,
    kinds: Mapping[str, JobKind] | None = None,
    *,
    concurrency: int = 4,
    grace_seconds: float = 5.0,
) -> AsyncIterator[Worker]:
    worker = Worker(runtime, concurrency=concurrency, kinds=kinds, grace_seconds=grace_seconds)
    task = asyncio.create_task(worker.run_until_stopped())
    ready = asyncio.create_task(worker.ready.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield worker
    finally:
        ready.cancel()
        await worker.drain()
        await task


def new_runtime(runtime: Runtime) -> Runtime:
    """Another worker process's runtime on the same database (its own node id)."""
    return Runtime.create(runtime.settings, runtime.db)


async def job_row(db: Database, job_id: uuid.UUID) -> Row[Any]:
    async with db.transaction(write=False) as session:
        row = (await session.execute(select(jobs).where(jobs.c.id == job_id))).one()
    return row


async def job_status(db: Database, job_id: uuid.UUID) -> str:
    return str((await job_row(db, job_id)).status)


async def expire_lease(db: Database, job_id: uuid.UUID) -> None:
    """Make a job's lease run out now, as if its worker had stopped heartbeating long ago."""
    async with db.transaction() as session:
        await session.execute(
            update(jobs)
            .where(jobs.c.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
