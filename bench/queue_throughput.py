"""Job queue throughput on PostgreSQL: real ``taskgate worker`` processes draining noop jobs,
against a raw asyncpg claim-and-complete loop measured in the same run on the same table.

20,000 noop jobs are enqueued in one transaction while the workers wait (they are woken by
NOTIFY); the clock runs from that commit until the last job is done. Goal: >= 2,000 jobs/s.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from bench.harness import ROOT, python_env, scratch_postgres

JOBS = int(os.environ.get("BENCH_QUEUE_JOBS", "20000"))
WORKERS = int(os.environ.get("BENCH_QUEUE_WORKERS", "2"))
CONCURRENCY = int(os.environ.get("BENCH_QUEUE_CONCURRENCY", "64"))
RAW_BATCH = CONCURRENCY
GOAL_JOBS_PER_SECOND = 2000.0
DATABASE = "taskgate_bench_queue"

_RAW_CLAIM = """
UPDATE queue_jobs SET status = 'leased', lease_owner = $1,
       lease_expires_at = now() + interval '30 seconds',
       attempts = attempts + 1, fencing_token = fencing_token + 1
WHERE id IN (SELECT id FROM queue_jobs WHERE status = 'queued' AND run_after <= now()
             ORDER BY neg_priority, run_after, id LIMIT $2 FOR UPDATE SKIP LOCKED)
RETURNING id, fencing_token
"""
_RAW_COMPLETE = """
UPDATE queue_jobs AS q SET status = 'done', completions = q.completions + 1,
       finished_at = now(), lease_expires_at = NULL
FROM unnest($1::uuid[], $2::bigint[]) AS held(id, token)
WHERE q.id = held.id AND q.fencing_token = held.token AND q.status = 'leased'
"""


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _migrate(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from taskgate.db.migrate import upgrade

    engine = create_async_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _enqueue(url: str) -> float:
    """Enqueue JOBS noop jobs in one transaction through the queue API; returns commit time."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from taskgate.db.session import Database
    from taskgate.runtime.queue import NewJob, enqueue_many

    db = Database(create_async_engine(url))
    try:
        async with db.transaction() as session:
            await enqueue_many(session, [NewJob("noop") for _ in range(JOBS)])
        return time.monotonic()
    finally:
        await db.dispose()


async def _remaining(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval(
        "SELECT (SELECT count(*) FROM queue_jobs WHERE status = 'queued') + "
        "(SELECT count(*) FROM queue_jobs WHERE status = 'leased')"
    )
    return count


async def _reset(url: str) -> None:
    connection = await asyncpg.connect(_dsn(url))
    try:
        await connection.execute("TRUNCATE queue_jobs, nodes")
        await connection.execute("VACUUM ANALYZE queue_jobs")
    finally:
        await connection.close()


async def raw_ceiling(url: str) -> float:
    """Bare connections looping claim(batch) + complete(batch): the most the table allows."""
    await _enqueue(url)
    # The same session settings as the workers' bookkeeping connections, for a fair ceiling.
    settings = {"synchronous_commit": "off", "enable_sort": "off"}
    connections = [
        await asyncpg.connect(_dsn(url), server_settings=settings) for _ in range(WORKERS)
    ]

    async def drain(connection: asyncpg.Connection, owner: str) -> None:
        while rows := await connection.fetch(_RAW_CLAIM, owner, RAW_BATCH):
            await connection.execute(
                _RAW_COMPLETE, [r["id"] for r in rows], [r["fencing_token"] for r in rows]
            )

    started = time.monotonic()
    await asyncio.gather(*(drain(c, f"raw-{n}") for n, c in enumerate(connections)))
    elapsed = time.monotonic() - started
    left = await _remaining(connections[0])
    for connection in connections:
        await connection.close()
    assert left == 0, f"{left} jobs left by the raw loop"
    return JOBS / elapsed


async def _wait_for_nodes(url: str, count: int, processes: list[subprocess.Popen[bytes]]) -> None:
    connection = await asyncpg.connect(_dsn(url))
    try:
        deadline = time.monotonic() + 60
        while await connection.fetchval("SELECT count(*) FROM nodes") < count:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("a worker exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not register within 60 s")
            await asyncio.sleep(0.1)
    finally:
        await connection.close()


async def _until_drained(url: str, since: float) -> float:
    connection = await asyncpg.connect(_dsn(url))
    try:
        deadline = since + 600
        while await _remaining(connection) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not finish within 10 minutes")
            await asyncio.sleep(0.05)
        done: int = await connection.fetchval(
            "SELECT count(*) FROM queue_jobs WHERE status = 'done' AND completions = 1"
        )
        assert done == JOBS, f"only {done} of {JOBS} jobs done exactly once"
        return time.monotonic() - since
    finally:
        await connection.close()


def worker_run(url: str, logs: Path) -> float:
    env = python_env(
        {
            "TASKGATE_DATABASE__URL": url,
            "TASKGATE_AUTH__JWT_SECRET": "bench-secret-" + "x" * 40,
            "TASKGATE_DATA_DIR": str(logs),
            "TASKGATE_LOG_LEVEL": "WARNING",
        }
    )
    command = [sys.executable, "-m", "taskgate.cli", "worker", "--concurrency", str(CONCURRENCY)]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(WORKERS):
            out = (logs / f"worker-{n}.log").open("wb")
            processes.append(
                subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            )
        asyncio.run(_wait_for_nodes(url, WORKERS, processes))
        committed = asyncio.run(_enqueue(url))
        elapsed = asyncio.run(_until_drained(url, committed))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process in processes]
    assert codes == [0] * WORKERS, f"workers exited with {codes}"
    return JOBS / elapsed


def main() -> None:
    with scratch_postgres(DATABASE) as url, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_migrate(url))
        raw = asyncio.run(raw_ceiling(url))
        asyncio.run(_reset(url))
        workers = worker_run(url, Path(tmp))
    verdict = "meets" if workers >= GOAL_JOBS_PER_SECOND else "MISSES"
    print(
        f"queue throughput, {JOBS} noop jobs, {WORKERS} workers x {CONCURRENCY}:\n"
        f"  taskgate workers   {workers:8.0f} jobs/s   ({workers / raw:.0%} of raw)\n"
        f"  raw asyncpg loop   {raw:8.0f} jobs/s   ({WORKERS} connections, batch {RAW_BATCH})\n"
        f"  goal >= {GOAL_JOBS_PER_SECOND:.0f} jobs/s: {verdict}",
        flush=True,
    )


if __name__ == "__main__":
    main()
