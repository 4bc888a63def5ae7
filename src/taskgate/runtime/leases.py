"""The queue, worker side: claim, heartbeat, fenced outcomes, reaping and pruning.

All of the queue's SQL for workers is here. The two dialects share it; the differences are
handled in one place each: ``FOR UPDATE SKIP LOCKED`` is rendered on PostgreSQL only (SQLite
serialises writers with BEGIN IMMEDIATE, so the same statement is already exclusive there),
and the batched completion uses arrays on PostgreSQL (one prepared statement for any batch).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    Uuid,
    bindparam,
    column,
    delete,
    exists,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from taskgate.clock import utcnow
from taskgate.db.types import UTCDateTime
from taskgate.runtime.queue import JobStatus, back_to_queue, jobs, sql_status

# Claims and completions also run on a bare connection (the worker's bookkeeping one).
Executor = AsyncSession | AsyncConnection
T = TypeVar("T")
QUEUED = sql_status(JobStatus.QUEUED)
LEASED = sql_status(JobStatus.LEASED)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int | None
    fencing_token: int
    concurrency_key: str | None


@dataclass(frozen=True, slots=True)
class LeaseState:
    status: str
    fencing_token: int
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class Expired:
    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int | None
    cancel_requested: bool


def dialect_of(executor: Executor) -> str:
    if isinstance(executor, AsyncConnection):
        return executor.dialect.name
    return executor.bind.dialect.name if executor.bind is not None else ""


def _key_is_free() -> Any:
    """A keyed job may start only when no job of its key is leased and none queued before it
    waits: at most one running per key, in enqueue (id) order, even across claimers, because
    every claimer's snapshot sees the earlier job queued, leased or finished."""
    other = jobs.alias("other")
    blocked = exists().where(
        other.c.concurrency_key == jobs.c.concurrency_key,
        other.c.status.in_([QUEUED, LEASED]),
        other.c.id != jobs.c.id,
        or_(other.c.status == LEASED, other.c.id < jobs.c.id),
    )
    return or_(jobs.c.concurrency_key.is_(None), ~blocked)


@functools.lru_cache(maxsize=32)
def _claim_statement(kinds: tuple[str, ...]) -> Any:
    """Built once per set of kinds: SQLAlchemy then reuses its cache key and compiled form,
    and the driver its prepared statement."""
    now = bindparam("now", type_=UTCDateTime())
    pick = (
        select(jobs.c.id)
        .where(
            jobs.c.status == QUEUED,
            jobs.c.run_after <= now,
            jobs.c.kind.in_(kinds),
            _key_is_free(),
        )
        .order_by(jobs.c.neg_priority, jobs.c.run_after, jobs.c.id)
        .limit(bindparam("limit", type_=Integer()))
        .with_for_update(skip_locked=True)
    )
    return (
        update(jobs)
        .where(jobs.c.id.in_(pick))
        .values(
            status=JobStatus.LEASED.value,
            lease_owner=bindparam("node_id", type_=String()),
            lease_expires_at=bindparam("until", type_=UTCDateTime()),
            attempts=jobs.c.attempts + 1,
            fencing_token=jobs.c.fencing_token + 1,
            started_at=now,
            updated_at=now,
        )
        .returning(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.payload,
            jobs.c.attempts,
            jobs.c.max_attempts,
            jobs.c.fencing_token,
            jobs.c.concurrency_key,
        )
    )


async def claim(
    session: Executor,
    *,
    node_id: str,
    limit: int,
    kinds: Sequence[str],
    lease_seconds: float,
) -> list[Claimed]:
    """Lease up to ``limit`` ready jobs: highest priority, then earliest run_after, then id."""
    now = utcnow()
    params = {
        "now": now,
        "until": now + timedelta(seconds=lease_seconds),
        "limit": limit,
        "node_id": node_id,
    }
    rows = (await session.execute(_claim_statement(tuple(sorted(kinds))), params)).all()
    claimed = [Claimed(*row) for row in rows]
    claimed.sort(key=lambda job: job.id)  # RETURNING order is unspecified
    return claimed


def _fenced(job_id: uuid.UUID, token: int) -> Any:
    return (jobs.c.id == job_id) & (jobs.c.fencing_token == token) & (jobs.c.status == LEASED)


async def lock_if_held(session: AsyncSession, job_id: uuid.UUID, token: int) -> bool:
    """Lock the job's row if this token still holds its lease (the fence of a unit of work)."""
    stmt = select(jobs.c.id).where(_fenced(job_id, token)).with_for_update()
    return (await session.execute(stmt)).first() is not None


_HELD = (
    (jobs.c.id == bindparam("fence_job_id", type_=Uuid()))
    & (jobs.c.fencing_token == bindparam("fence_token", type_=BigInteger()))
    & (jobs.c.status == LEASED)
)


@functools.lru_cache(maxsize=32)
def fenced_statement(stmt: Select[tuple[T]]) -> Select[tuple[T]]:
    """``stmt`` (a SELECT of one entity, built once) joined to the job's queue row on the
    condition that the token holds its lease, and locked with it; no row when the lease is
    gone. Built once too, so SQLAlchemy computes its cache key once. Its parameters add
    ``fence_job_id`` and ``fence_token``."""
    return stmt.join(jobs, _HELD).with_for_update()


def _done_values(now: datetime) -> dict[str, Any]:
    return {
        "status": JobStatus.DONE.value,
        "completions": jobs.c.completions + 1,
        "finished_at": now,
        "updated_at": now,
        "lease_expires_at": None,
    }


async def mark_done(session: AsyncSession, job_id: uuid.UUID, token: int) -> bool:
    stmt = update(jobs).where(_fenced(job_id, token)).values(_done_values(utcnow()))
    return (await session.execute(stmt.returning(jobs.c.id))).first() is not None


_COMPLETE_MANY_PG = (
    text(
        "UPDATE queue_jobs AS q SET status = 'done', completions = q.completions + 1, "
        "finished_at = :now, updated_at = :now, lease_expires_at = NULL "
        "FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS bigint[])) AS held(id, token) "
        "WHERE q.id = held.id AND q.fencing_token = held.token AND q.status = 'leased' "
        "RETURNING q.id"
    )
    .bindparams(
        bindparam("ids", type_=ARRAY(Uuid())),
        bindparam("tokens", type_=ARRAY(BigInteger())),
        bindparam("now", type_=UTCDateTime()),
    )
    .columns(column("id", Uuid()))
)


async def complete_many(session: Executor, held: Sequence[tuple[uuid.UUID, int]]) -> set[uuid.UUID]:
    """Mark many jobs done, each only if its token still holds; returns those marked."""
    if not held:
        return set()
    now = utcnow()
    if dialect_of(session) == "postgresql":
        params = {"ids": [h[0] for h in held], "tokens": [h[1] for h in held], "now": now}
        result = await session.execute(_COMPLETE_MANY_PG, params)
    else:
        stmt = (
            update(jobs)
            .where(
                tuple_(jobs.c.id, jobs.c.fencing_token).in_(list(held)),
                jobs.c.status == LEASED,
            )
            .values(_done_values(now))
            .returning(jobs.c.id)
        )
        result = await session.execute(stmt)
    return set(result.scalars())


async def finish(
    session: AsyncSession, job_id: uuid.UUID, token: int, status: JobStatus, error: str | None
) -> bool:
    """End a held job as failed, dead or cancelled."""
    now = utcnow()
    stmt = (
        update(jobs)
        .where(_fenced(job_id, token))
        .values(
            status=status.value,
            last_error=error,
            finished_at=now,
            updated_at=now,
            lease_expires_at=None,
        )
        .returning(jobs.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def retry(
    session: AsyncSession, job_id: uuid.UUID, token: int, *, delay: float, error: str | None
) -> bool:
    """Put a held job back in the queue to run again after ``delay`` seconds."""
    now = utcnow()
    stmt = (
        update(jobs)
        .where(_fenced(job_id, token))
        .values(back_to_queue(now, now + timedelta(seconds=delay)))
        .values(last_error=error)
        .returning(jobs.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def give_back(session: AsyncSession, job_id: uuid.UUID, token: int) -> bool:
    """Release a held job untouched (the worker is stopping); the attempt does not count."""
    now = utcnow()
    stmt = (
        update(jobs)
        .where(_fenced(job_id, token))
        .values(back_to_queue(now, now))
        .values(attempts=jobs.c.attempts - 1)
        .returning(jobs.c.id)
    )
    return (await session.execute(stmt)).first() is not None


async def extend(
    session: AsyncSession, node_id: str, job_ids: Sequence[uuid.UUID], lease_seconds: float
) -> None:
    """Heartbeat: push back the lease of every job this node holds. Rows locked by a job's own
    unit of work are skipped (they cannot be retaken while locked) rather than waited for."""
    if not job_ids:
        return
    held = (
        select(jobs.c.id)
        .where(jobs.c.id.in_(job_ids), jobs.c.status == LEASED, jobs.c.lease_owner == node_id)
        .with_for_update(skip_locked=True)
    )
    now = utcnow()
    await session.execute(
        update(jobs)
        .where(jobs.c.id.in_(held))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
    )


async def lease_states(
    session: AsyncSession, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, LeaseState]:
    """Status, token and cancel flag of the jobs a worker runs, in one query."""
    if not job_ids:
        return {}
    stmt = select(jobs.c.id, jobs.c.status, jobs.c.fencing_token, jobs.c.cancel_requested).where(
        jobs.c.id.in_(job_ids)
    )
    return {row[0]: LeaseState(*row[1:]) for row in (await session.execute(stmt)).all()}


async def expired(session: AsyncSession, limit: int) -> list[Expired]:
    """Leased jobs whose lease ran out (their worker died or hung), locked for the reaper."""
    stmt = (
        select(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.payload,
            jobs.c.attempts,
            jobs.c.max_attempts,
            jobs.c.cancel_requested,
        )
        .where(jobs.c.status == LEASED, jobs.c.lease_expires_at < utcnow())
        .order_by(jobs.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [Expired(*row) for row in (await session.execute(stmt)).all()]


async def requeue_expired(session: AsyncSession, job_id: uuid.UUID, delay: float) -> None:
    now = utcnow()
    await session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == LEASED)
        .values(back_to_queue(now, now + timedelta(seconds=delay)))
        .values(last_error="lease expired")
    )


async def bury_expired(session: AsyncSession, job_id: uuid.UUID, reason: str) -> None:
    now = utcnow()
    await session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == LEASED)
        .values(
            status=JobStatus.DEAD.value,
            last_error=reason,
            finished_at=now,
            updated_at=now,
            lease_expires_at=None,
        )
    )


async def cancel_expired(session: AsyncSession, job_id: uuid.UUID) -> None:
    now = utcnow()
    await session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == LEASED)
        .values(
            status=JobStatus.CANCELLED.value,
            finished_at=now,
            updated_at=now,
            lease_expires_at=None,
        )
    )


async def prune_finished(session: AsyncSession, older_than: datetime, limit: int) -> int:
    """Delete up to ``limit`` finished jobs (done, failed, dead, cancelled) past retention."""
    victims = select(jobs.c.id).where(jobs.c.finished_at < older_than).limit(limit)
    result = await session.execute(delete(jobs).where(jobs.c.id.in_(victims)).returning(jobs.c.id))
    return len(result.all())
