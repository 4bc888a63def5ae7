"""The durable queue on real SQLite and PostgreSQL: claims, order, fencing, reaping, cancels."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.errors import Conflict, NotFound
from taskgate.runtime import leases, reaper
from taskgate.runtime.context import JobContext, LeaseLost, Runtime
from taskgate.runtime.handlers import JobKind
from taskgate.runtime.queue import (
    DEAD_LETTER_KIND,
    JobStatus,
    NewJob,
    enqueue,
    enqueue_many,
    jobs,
    release,
    request_cancel,
    requeue,
)
from taskgate.settings import Settings
from tests.runtime.queue_support import (
    expire_lease,
    job_row,
    job_status,
    running_worker,
)
from tests.support.waiting import eventually

KIND = "test.job"


@pytest.fixture
def runtime(settings: Settings, db: Database) -> Runtime:
    return Runtime(settings, db, "node-a")


async def claim(db: Database, limit: int = 10, node: str = "node-a") -> list[leases.Claimed]:
    async with db.transaction() as session:
        return await leases.claim(
            session, node_id=node, limit=limit, kinds=[KIND], lease_seconds=30
        )


def context(runtime: Runtime, job: leases.Claimed) -> JobContext:
    return JobContext(runtime, job.id, job.kind, job.payload, job.attempts, 3, job.fencing_token)


async def add(db: Database, **options: Any) -> uuid.UUID:
    async with db.transaction() as session:
        job = await enqueue(session, KIND, options.pop("payload", {}), **options)
    return job.id


async def test_enqueue_claim_complete(runtime: Runtime, db: Database) -> None:
    async def enqueue_then_fail() -> None:
        async with db.transaction() as session:
            await enqueue(session, KIND, {"n": 0})
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await enqueue_then_fail()
    assert await claim(db) == []  # nothing from a rolled-back transaction

    job_id = await add(db, payload={"n": 1})
    [job] = await claim(db)
    assert (job.id, job.kind, job.payload, job.attempts, job.fencing_token) == (
        job_id,
        KIND,
        {"n": 1},
        1,
        1,
    )
    row = await job_row(db, job_id)
    assert row.status == "leased"
    assert row.lease_owner == "node-a"
    assert row.lease_expires_at > utcnow() + timedelta(seconds=25)

    ctx = context(runtime, job)
    async with ctx.transaction() as session:
        await ctx.complete(session)
    assert ctx.completed
    row = await job_row(db, job_id)
    assert (row.status, row.completions, row.lease_expires_at) == ("done", 1, None)
    assert row.finished_at is not None
    assert await claim(db) == []


async def test_claims_highest_priority_first_then_earliest_run_after(db: Database) -> None:
    now = utcnow()
    low = await add(db, priority=-1, run_after=now - timedelta(seconds=30))
    late_normal = await add(db, run_after=now - timedelta(seconds=1))
    early_normal = await add(db, run_after=now - timedelta(seconds=5))
    urgent_late = await add(db, priority=5, run_after=now - timedelta(seconds=1))
    urgent_early = await add(db, priority=5, run_after=now - timedelta(seconds=2))
    order = [(await claim(db, limit=1))[0].id for _ in range(5)]
    assert order == [urgent_early, urgent_late, early_normal, late_normal, low]


async def test_run_after_is_respected(db: Database) -> None:
    await add(db, run_after=utcnow() + timedelta(hours=1))
    due = await add(db, run_after=utcnow() - timedelta(milliseconds=1))
    assert [job.id for job in await claim(db)] == [due]
    assert await claim(db) == []


async def test_claims_in_batches_up_to_the_free_slots(db: Database) -> None:
    async with db.transaction() as session:
        ids = await enqueue_many(session, [NewJob(KIND, {"n": n}) for n in range(10)])
    batches = [await claim(db, limit=4) for _ in range(4)]
    assert [len(batch) for batch in batches] == [4, 4, 2, 0]
    claimed = [job.id for batch in batches for job in batch]
    assert sorted(claimed) == sorted(ids)
    assert claimed == ids  # same priority and run_after: enqueue order


async def test_concurrent_claimers_never_get_the_same_job(runtime: Runtime, db: Database) -> None:
    async with db.transaction() as session:
        ids = await enqueue_many(session, [NewJob(KIND) for _ in range(200)])
    databases = [Database(db.engine) for _ in range(4)]

    async def claimer(number: int) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        while batch := await claim(databases[number], limit=7, node=f"node-{number}"):
            got.extend(job.id for job in batch)
            await asyncio.sleep(0)
        return got

    results = await asyncio.gather(*(claimer(n) for n in range(4)))
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == 200
    assert set(claimed) == set(ids)
    if db.dialect == "postgresql":
        assert sum(1 for result in results if result) > 1  # they really ran side by side


async def test_stale_fencing_token_cannot_commit(runtime: Runtime, db: Database) -> None:
    job_id = await add(db)
    [first] = await claim(db, node="node-a")
    await expire_lease(db, job_id)
    assert await reaper.reap_expired(runtime) == 1
    async with db.transaction() as session:  # skip the backoff: make it due now
        await session.execute(update(jobs).where(jobs.c.id == job_id).values(run_after=utcnow()))
    [second] = await claim(db, node="node-b")
    assert second.id == job_id
    assert second.fencing_token > first.fencing_token

    stale = context(runtime, first)

    async def write_with_stale_token() -> None:
        async with stale.transaction() as session:
            await enqueue(session, "test.side-effect", {})
            await stale.complete(session)

    with pytest.raises(LeaseLost):
        await write_with_stale_token()
    async with db.transaction(write=False) as session:
        side_effects = await session.scalar(
            select(func.count()).where(jobs.c.kind == "test.side-effect")
        )
    assert side_effects == 0

    current = context(runtime, second)
    async with current.transaction() as session:
        await current.complete(session)
    row = await job_row(db, job_id)
    assert (row.status, row.completions, row.attempts) == ("done", 1, 2)


async def test_reaper_requeues_expired_leases_with_backoff(runtime: Runtime, db: Database) -> None:
    job_id = await add(db, max_attempts=3)
    await claim(db)
    await expire_lease(db, job_id)
    before = utcnow()
    assert await reaper.reap_expired(runtime) == 1
    row = await job_row(db, job_id)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 1, None)
    assert row.last_error == "lease expired"
    # Backoff after the first attempt: between half and all of one second.
    assert before + timedelta(seconds=0.5) <= row.run_after <= utcnow() + timedelta(seconds=1)
    assert await claim(db) == []


async def test_reaper_buries_after_max_attempts_and_calls_on_dead(
    runtime: Runtime, db: Database
) -> None:
    job_id = await add(db, max_attempts=1, payload={"order": 7})
    await claim(db)
    await expire_lease(db, job_id)
    await reaper.reap_expired(runtime)
    row = await job_row(db, job_id)
    assert (row.status, row.last_error) == ("dead", "lease expired after 1 attempts")

    told: list[tuple[uuid.UUID, str, dict[str, Any], str]] = []

    async def on_dead(
        rt: Runtime, dead_id: uuid.UUID, kind: str, payload: dict[str, Any], reason: str
    ) -> None:
        assert rt is runtime
        told.append((dead_id, kind, payload, reason))

    async def never(ctx: JobContext) -> None:
        raise AssertionError("a dead job must not run")

    async with running_worker(runtime, {KIND: JobKind(never, on_dead=on_dead)}):
        await eventually(lambda: told)
    assert told == [(job_id, KIND, {"order": 7}, "lease expired after 1 attempts")]
    async with db.transaction(write=False) as session:
        letters = (
            await session.execute(select(jobs.c.status).where(jobs.c.kind == DEAD_LETTER_KIND))
        ).scalars()
        assert list(letters) == ["done"]


async def test_cancel_of_a_queued_job_is_immediate(db: Database) -> None:
    job_id = await add(db)
    async with db.transaction() as session:
        await request_cancel(session, job_id)
    assert await job_status(db, job_id) == "cancelled"
    assert await claim(db) == []
    async with db.transaction() as session:  # finished: a no-op
        await request_cancel(session, job_id)
    assert await job_status(db, job_id) == "cancelled"


async def test_cancel_requested_while_leased_survives_an_expired_lease(
    runtime: Runtime, db: Database
) -> None:
    job_id = await add(db)
    await claim(db)
    async with db.transaction() as session:
        await request_cancel(session, job_id)
    row = await job_row(db, job_id)
    assert (row.status, row.cancel_requested) == ("leased", True)
    await expire_lease(db, job_id)
    await reaper.reap_expired(runtime)
    assert await job_status(db, job_id) == "cancelled"


async def test_concurrency_key_leases_one_job_per_key_in_order(
    runtime: Runtime, db: Database
) -> None:
    first = await add(db, concurrency_key="sub-1")
    second = await add(db, concurrency_key="sub-1")
    other_key = await add(db, concurrency_key="sub-2")
    free = await add(db)
    batch = await claim(db)
    assert {job.id for job in batch} == {first, other_key, free}
    assert await claim(db) == []  # sub-1 is busy

    ctx = context(runtime, next(job for job in batch if job.id == first))
    async with ctx.transaction() as session:
        await ctx.complete(session)
    assert [job.id for job in await claim(db)] == [second]


async def test_release_gives_a_job_back_without_counting_the_attempt(
    runtime: Runtime, db: Database
) -> None:
    job_id = await add(db)
    [job] = await claim(db)
    async with db.transaction() as session:
        await release(session, job_id)
    row = await job_row(db, job_id)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None)
    with pytest.raises(LeaseLost):
        async with context(runtime, job).transaction():
            pass
    [again] = await claim(db)
    assert again.id == job_id
    assert again.attempts == 1


async def test_requeue_resumes_finished_jobs_but_not_done_ones(
    runtime: Runtime, db: Database
) -> None:
    job_id = await add(db)
    async with db.transaction() as session:
        await request_cancel(session, job_id)
    later = utcnow() + timedelta(minutes=5)
    async with db.transaction() as session:
        await requeue(session, job_id, run_after=later)
    row = await job_row(db, job_id)
    assert (row.status, row.run_after, row.cancel_requested, row.finished_at) == (
        "queued",
        later,
        False,
        None,
    )
    async with db.transaction() as session:
        await requeue(session, job_id)
    [job] = await claim(db)
    ctx = context(runtime, job)
    async with ctx.transaction() as session:
        await ctx.complete(session)
    with pytest.raises(Conflict):
        async with db.transaction() as session:
            await requeue(session, job_id)
    with pytest.raises(NotFound):
        async with db.transaction() as session:
            await requeue(session, uuid.uuid4())


async def test_finished_jobs_are_pruned_after_retention(runtime: Runtime, db: Database) -> None:
    old = await add(db)
    recent = await add(db)
    waiting = await add(db)
    for job_id, age in ((old, timedelta(hours=80)), (recent, timedelta(hours=1))):
        async with db.transaction() as session:
            await session.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(status=JobStatus.DONE.value, finished_at=utcnow() - age)
            )
    assert await reaper.prune(runtime) == 1  # retention: 72 h
    async with db.transaction(write=False) as session:
        left = set((await session.execute(select(jobs.c.id))).scalars())
    assert left == {recent, waiting}
