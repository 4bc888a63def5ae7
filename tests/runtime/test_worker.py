"""The worker runtime: outcomes, retries, timeouts, cancellation, wake-ups, leases, drain."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.runtime import leases
from taskgate.runtime.context import (
    JobContext,
    PermanentFailure,
    RetryLater,
    Runtime,
)
from taskgate.runtime.handlers import JobKind
from taskgate.runtime.queue import enqueue, jobs, request_cancel
from taskgate.settings import Settings
from tests.runtime.queue_support import (
    expire_lease,
    job_row,
    job_status,
    new_runtime,
    running_worker,
)
from tests.support.waiting import eventually

KIND = "test.job"
Reasons = list[tuple[uuid.UUID, str]]


def make_runtime(settings_factory: Callable[..., Settings], db: Database, **worker: Any) -> Runtime:
    settings = settings_factory(worker={"poll_seconds": 0.1, **worker})
    return Runtime(settings, db, f"test:{uuid.uuid4().hex[:6]}")


async def add(db: Database, payload: dict[str, Any] | None = None, **options: Any) -> uuid.UUID:
    async with db.transaction() as session:
        job = await enqueue(session, options.pop("kind", KIND), payload or {}, **options)
    return job.id


def status_is(db: Database, job_id: uuid.UUID, *statuses: str) -> Callable[[], Any]:
    async def check() -> bool:
        return await job_status(db, job_id) in statuses

    return check


def recording_dead_hook(into: Reasons) -> Any:
    async def on_dead(
        runtime: Runtime, job_id: uuid.UUID, kind: str, payload: dict[str, Any], reason: str
    ) -> None:
        into.append((job_id, reason))

    return on_dead


async def test_runs_jobs_once_and_marks_them_done(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    seen: list[int] = []

    async def handler(ctx: JobContext) -> None:
        seen.append(ctx.payload["n"])

    runtime = make_runtime(settings_factory, db)
    async with running_worker(runtime, {KIND: JobKind(handler)}, concurrency=3):
        ids = [await add(db, {"n": n}) for n in range(20)]
        for job_id in ids:
            await eventually(status_is(db, job_id, "done"))
    assert sorted(seen) == list(range(20))
    rows = [await job_row(db, job_id) for job_id in ids]
    assert {(row.attempts, row.completions) for row in rows} == {(1, 1)}


async def test_noop_kind_commits_its_outcome_in_the_fenced_transaction(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    runtime = make_runtime(settings_factory, db)
    async with running_worker(runtime):  # the registered kinds
        job_id = await add(db, {"sleep_ms": 20, "commit": True}, kind="noop")
        await eventually(status_is(db, job_id, "done"))
    assert (await job_row(db, job_id)).completions == 1


async def test_enqueue_wakes_an_idle_worker_at_once(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    async def handler(ctx: JobContext) -> None:
        pass

    runtime = make_runtime(settings_factory, db, poll_seconds=30)
    async with running_worker(runtime, {KIND: JobKind(handler)}) as worker:
        await asyncio.wait_for(worker.idle.wait(), timeout=5)  # the queue was empty
        asked = time.monotonic()
        job_id = await add(db)
        await eventually(status_is(db, job_id, "done"), timeout=2)
        assert time.monotonic() - asked < 1


@pytest.mark.postgres
async def test_notify_wakes_a_worker_in_another_process(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")

    async def handler(ctx: JobContext) -> None:
        pass

    runtime = make_runtime(settings_factory, db, poll_seconds=30)
    other_process = Database(create_engine(runtime.settings))  # no in-process signal reaches us
    try:
        async with running_worker(runtime, {KIND: JobKind(handler)}) as worker:
            await asyncio.wait_for(worker.idle.wait(), timeout=5)  # the queue was empty
            asked = time.monotonic()
            job_id = await add(other_process)
            await eventually(status_is(db, job_id, "done"), timeout=3)
            assert time.monotonic() - asked < 1
    finally:
        await other_process.dispose()


async def test_retry_later_runs_again_after_its_delay(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    starts: list[float] = []

    async def handler(ctx: JobContext) -> None:
        starts.append(time.monotonic())
        if ctx.attempt == 1:
            raise RetryLater("not yet", delay_seconds=0.3)

    runtime = make_runtime(settings_factory, db)
    async with running_worker(runtime, {KIND: JobKind(handler)}):
        job_id = await add(db)
        await eventually(status_is(db, job_id, "done"))
    row = await job_row(db, job_id)
    assert (row.attempts, row.last_error) == (2, "not yet")
    assert starts[1] - starts[0] >= 0.3


async def test_permanent_failure_fails_at_once_and_tells_the_owner(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    dead: Reasons = []

    async def handler(ctx: JobContext) -> None:
        raise PermanentFailure("bad input")

    runtime = make_runtime(settings_factory, db)
    kinds = {KIND: JobKind(handler, on_dead=recording_dead_hook(dead))}
    async with running_worker(runtime, kinds):
        job_id = await add(db, max_attempts=5)
        await eventually(status_is(db, job_id, "failed"))
        await eventually(lambda: dead)
    row = await job_row(db, job_id)
    assert (row.attempts, row.last_error) == (1, "PermanentFailure: bad input")
    assert dead == [(job_id, "PermanentFailure: bad input")]


async def test_errors_are_retried_with_backoff_until_dead(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    dead: Reasons = []
    starts: list[float] = []

    async def handler(ctx: JobContext) -> None:
        starts.append(time.monotonic())
        raise ValueError(f"boom {ctx.attempt}")

    runtime = make_runtime(settings_factory, db)
    kinds = {KIND: JobKind(handler, on_dead=recording_dead_hook(dead))}
    async with running_worker(runtime, kinds):
        job_id = await add(db, max_attempts=2)
        await eventually(status_is(db, job_id, "dead"))
        await eventually(lambda: dead)
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 0.5  # backoff after attempt 1: 0.5-1 s
    row = await job_row(db, job_id)
    assert row.attempts == 2
    assert row.last_error == "gave up after 2 attempts: ValueError: boom 2"
    assert dead == [(job_id, row.last_error)]


async def test_timeout_cancels_the_handler_and_counts_as_a_failure(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    cancelled = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runtime = make_runtime(settings_factory, db)
    async with running_worker(runtime, {KIND: JobKind(handler, timeout_seconds=0.2)}):
        job_id = await add(db, max_attempts=1)
        await eventually(status_is(db, job_id, "dead"))
    assert cancelled.is_set()
    assert (
        await job_row(db, job_id)
    ).last_error == "gave up after 1 attempts: timed out after 0.2 s"


@pytest.mark.parametrize("path", ["same process", "other process"])
async def test_cancel_stops_a_running_handler_within_a_second(
    settings_factory: Callable[..., Settings], db: Database, path: str
) -> None:
    started = asyncio.Event()
    stopped_at: list[float] = []

    async def handler(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped_at.append(time.monotonic())
            raise

    runtime = make_runtime(settings_factory, db)
    # From another process, only NOTIFY (PostgreSQL) or the flag check (SQLite) can tell us.
    canceller = db if path == "same process" else Database(create_engine(runtime.settings))
    try:
        async with running_worker(runtime, {KIND: JobKind(handler)}):
            job_id = await add(db)
            await asyncio.wait_for(started.wait(), timeout=5)
            asked = time.monotonic()
            async with canceller.transaction() as session:
                await request_cancel(session, job_id)
            await eventually(lambda: stopped_at, timeout=2)
            assert stopped_at[0] - asked < 1.0
            await eventually(status_is(db, job_id, "cancelled"))
    finally:
        if canceller is not db:
            await canceller.dispose()


async def test_drain_lets_running_jobs_finish(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    started = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(0.3)

    runtime = make_runtime(settings_factory, db)
    async with running_worker(runtime, {KIND: JobKind(handler)}, grace_seconds=5) as worker:
        job_id = await add(db)
        await asyncio.wait_for(started.wait(), timeout=5)
        await worker.drain()
        assert await job_status(db, job_id) == "done"
        waiting = await add(db)  # no new claims once draining
    assert await job_status(db, waiting) == "queued"


async def test_drain_releases_jobs_that_outlive_the_grace_period(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    started = asyncio.Event()

    async def slow(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    async def quick(ctx: JobContext) -> None:
        pass

    runtime = make_runtime(settings_factory, db)
    async with running_worker(runtime, {KIND: JobKind(slow)}, grace_seconds=0.2) as worker:
        job_id = await add(db)
        await asyncio.wait_for(started.wait(), timeout=5)
        began = time.monotonic()
        await worker.drain()
        assert time.monotonic() - began < 3
    row = await job_row(db, job_id)
    assert (row.status, row.attempts, row.lease_owner) == ("queued", 0, None)
    async with running_worker(new_runtime(runtime), {KIND: JobKind(quick)}):
        await eventually(status_is(db, job_id, "done"))


async def test_jobs_sharing_a_concurrency_key_run_one_at_a_time_in_order(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    active: set[str] = set()
    overlaps: list[str] = []
    order: list[int] = []

    async def handler(ctx: JobContext) -> None:
        key = ctx.payload["key"]
        if key in active:
            overlaps.append(key)
        active.add(key)
        order.append(ctx.payload["n"])
        await asyncio.sleep(0.02)
        active.discard(key)

    runtime = make_runtime(settings_factory, db)
    ids = [await add(db, {"key": "k", "n": n}, concurrency_key="k") for n in range(6)]
    kinds = {KIND: JobKind(handler)}
    async with (
        running_worker(runtime, kinds, concurrency=4),
        running_worker(new_runtime(runtime), kinds, concurrency=4),
    ):
        for job_id in ids:
            await eventually(status_is(db, job_id, "done"))
    assert overlaps == []
    assert order == list(range(6))


async def test_heartbeat_keeps_a_long_job_leased(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    async def handler(ctx: JobContext) -> None:
        await asyncio.sleep(4.5)  # longer than two leases

    runtime = make_runtime(settings_factory, db, lease_seconds=2)
    async with running_worker(runtime, {KIND: JobKind(handler)}):
        job_id = await add(db)
        await eventually(status_is(db, job_id, "done"), timeout=10)
    row = await job_row(db, job_id)
    assert (row.attempts, row.completions) == (1, 1)


async def test_a_worker_that_lost_its_lease_stops_and_writes_nothing(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    async def handler(ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    runtime = make_runtime(settings_factory, db)
    async with running_worker(runtime, {KIND: JobKind(handler)}):
        job_id = await add(db)
        await asyncio.wait_for(started.wait(), timeout=5)
        await expire_lease(db, job_id)
        async with db.transaction() as session:  # the reaper elsewhere gave it to node-b
            await session.execute(jobs.update().where(jobs.c.id == job_id).values(status="queued"))
            [stolen] = await leases.claim(
                session, node_id="node-b", limit=1, kinds=[KIND], lease_seconds=30
            )
        await asyncio.wait_for(stopped.wait(), timeout=2)
    row = await job_row(db, job_id)
    assert (row.status, row.lease_owner, row.fencing_token) == ("leased", "node-b", 2)
    assert stolen.fencing_token == 2


async def test_node_registers_heartbeats_and_stops(
    settings_factory: Callable[..., Settings], db: Database
) -> None:
    from taskgate.models import Node

    runtime = make_runtime(settings_factory, db)
    runtime.capabilities["sandbox"] = "process"
    async with running_worker(runtime, concurrency=7):
        async with db.transaction(write=False) as session:
            node = (await session.scalars(select(Node))).one()
        assert (node.id, node.concurrency, node.status) == (runtime.node_id, 7, "active")
        assert "noop" in node.kinds
        assert node.capabilities == {"sandbox": "process"}
    async with db.transaction(write=False) as session:
        assert (await session.scalars(select(Node.status))).one() == "stopped"
