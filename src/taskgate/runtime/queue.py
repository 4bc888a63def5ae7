"""The durable job queue, producer side: enqueue, cancel, release and requeue.

Every call works inside the caller's transaction; nothing is visible to workers, and nobody is
woken, before that transaction commits.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, case, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import utcnow
from taskgate.db.session import signal_after_commit
from taskgate.errors import Conflict, NotFound, ValidationFailed
from taskgate.ids import new_id
from taskgate.models import QueueJob
from taskgate.runtime.notify import PG_CANCEL_CHANNEL, PG_JOBS_CHANNEL, notify_after_commit

# Database.listen channels: kinds enqueued, and job ids whose state a holder must re-check.
JOBS_CHANNEL = "jobs"
CANCEL_CHANNEL = "cancel"
# The job that calls a kind's on_dead hook, so the owner hears about it even after a crash.
DEAD_LETTER_KIND = "queue.dead_letter"
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0

jobs: Table = QueueJob.__table__  # type: ignore[assignment]


class JobStatus(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


FINISHED_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.DEAD, JobStatus.CANCELLED)


def sql_status(status: JobStatus) -> Any:
    """A status as an SQL literal, so the planner can match the partial indexes' predicates
    even in generic prepared plans (a bound parameter hides the value from it)."""
    return literal_column(f"'{status.value}'")


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter: about 1 s after the first attempt, capped at 5 min."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


@dataclass
class NewJob:
    """One job for :func:`enqueue_many`."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    run_after: datetime | None = None
    max_attempts: int | None = None
    concurrency_key: str | None = None
    job_id: uuid.UUID | None = None


def _row(job: NewJob, now: datetime) -> dict[str, Any]:
    if not job.kind:
        raise ValidationFailed.field("kind", "must not be empty")
    if job.max_attempts is not None and job.max_attempts < 1:
        raise ValidationFailed.field("max_attempts", "must be at least 1")
    return {
        "id": job.job_id or new_id(),
        "kind": job.kind,
        "payload": job.payload,
        "status": JobStatus.QUEUED.value,
        "priority": job.priority,
        "neg_priority": -job.priority,
        "run_after": job.run_after or now,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "fencing_token": 0,
        "concurrency_key": job.concurrency_key,
        "cancel_requested": False,
        "completions": 0,
        "created_at": now,
        "updated_at": now,
    }


def wake_after_commit(session: AsyncSession, kind: str) -> None:
    """Wake workers of ``kind``, here and in other processes, once the session commits."""
    signal_after_commit(session, JOBS_CHANNEL, kind)
    notify_after_commit(session, PG_JOBS_CHANNEL, kind)


async def enqueue(
    session: AsyncSession,
    kind: str,
    payload: dict[str, Any],
    *,
    priority: int = 0,
    run_after: datetime | None = None,
    max_attempts: int | None = None,
    concurrency_key: str | None = None,
    job_id: uuid.UUID | None = None,
) -> QueueJob:
    """Add a job in the caller's transaction; workers are woken once it commits.

    Higher ``priority`` runs first; ``max_attempts`` None means the worker's configured
    default; jobs sharing a ``concurrency_key`` run one at a time, in enqueue order.
    """
    spec = NewJob(kind, payload, priority, run_after, max_attempts, concurrency_key, job_id)
    job = QueueJob(**job_values(spec))
    session.add(job)
    wake_after_commit(session, kind)
    return job


def job_values(spec: NewJob) -> dict[str, Any]:
    """A queued job's columns, for callers that insert rows themselves and then call
    :func:`wake_after_commit`."""
    return _row(spec, utcnow())


async def enqueue_many(session: AsyncSession, new_jobs: Sequence[NewJob]) -> list[uuid.UUID]:
    """Add many jobs with one multi-row insert (fan-outs, bulk loads)."""
    if not new_jobs:
        return []
    now = utcnow()
    rows = [_row(job, now) for job in new_jobs]
    await session.execute(insert(jobs), rows)
    for kind in {job.kind for job in new_jobs}:
        wake_after_commit(session, kind)
    return [row["id"] for row in rows]


def _check_holder(session: AsyncSession, job_id: uuid.UUID) -> None:
    """The worker holding ``job_id`` re-reads its state (and stops the handler) at once."""
    signal_after_commit(session, CANCEL_CHANNEL, job_id)
    notify_after_commit(session, PG_CANCEL_CHANNEL, str(job_id))


async def request_cancel(session: AsyncSession, job_id: uuid.UUID) -> None:
    """Cancel a job: a queued one at once; a running one is stopped by its worker within a
    second (its handler's task is cancelled) and then marked cancelled. Finished: no-op."""
    now = utcnow()
    queued = await session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == sql_status(JobStatus.QUEUED))
        .values(
            status=JobStatus.CANCELLED.value,
            cancel_requested=True,
            finished_at=now,
            updated_at=now,
        )
        .returning(jobs.c.id)
    )
    if queued.first() is not None:
        return
    leased = await session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == sql_status(JobStatus.LEASED))
        .values(cancel_requested=True, updated_at=now)
        .returning(jobs.c.id)
    )
    if leased.first() is not None:
        _check_holder(session, job_id)


def back_to_queue(now: datetime, run_after: datetime) -> dict[str, Any]:
    """Column values that return a leased job to the queue, unless its cancellation was
    requested meanwhile: then it ends cancelled, so a cancel is never lost."""
    requested = jobs.c.cancel_requested
    return {
        "status": case((requested, JobStatus.CANCELLED.value), else_=JobStatus.QUEUED.value),
        "finished_at": case((requested, now), else_=None),
        "run_after": run_after,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": now,
    }


async def release(session: AsyncSession, job_id: uuid.UUID) -> None:
    """Give a running job back to the queue now, without counting the attempt; the worker
    running it stops the handler and writes nothing (its lease is void). Not leased: no-op."""
    now = utcnow()
    released = await session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == sql_status(JobStatus.LEASED))
        .values(attempts=case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0))
        .values(back_to_queue(now, now))
        .returning(jobs.c.kind)
    )
    kind = released.scalar()
    if kind is not None:
        _check_holder(session, job_id)
        wake_after_commit(session, kind)


async def requeue(
    session: AsyncSession, job_id: uuid.UUID, *, run_after: datetime | None = None
) -> None:
    """Put a job back in the queue at ``run_after`` (None: now), e.g. to resume it after a
    pause (pause = :func:`request_cancel`). A cancelled, failed or dead job starts over with a
    fresh attempt budget; a running one is taken from its worker first. A done job: Conflict."""
    row = (
        await session.execute(
            select(jobs.c.status, jobs.c.kind).where(jobs.c.id == job_id).with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound("No such job.")
    status = JobStatus(row.status)
    if status is JobStatus.DONE:
        raise Conflict("The job is already done.")
    now = utcnow()
    if status is JobStatus.LEASED:
        attempts: Any = case((jobs.c.attempts > 0, jobs.c.attempts - 1), else_=0)
    elif status is JobStatus.QUEUED:
        attempts = jobs.c.attempts
    else:
        attempts = 0
    await session.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(
            status=JobStatus.QUEUED.value,
            run_after=run_after or now,
            attempts=attempts,
            cancel_requested=False,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=None,
            updated_at=now,
        )
    )
    if status is JobStatus.LEASED:
        _check_holder(session, job_id)
    wake_after_commit(session, row.kind)
