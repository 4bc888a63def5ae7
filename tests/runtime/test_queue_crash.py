"""Workers killed with SIGKILL mid-job: every job still ends done, and done exactly once."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

import taskgate
from taskgate.db.session import Database
from taskgate.models import Node
from taskgate.runtime.queue import NewJob, enqueue_many, jobs
from taskgate.settings import Settings
from tests.conftest import TEST_SECRET
from tests.support.waiting import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
JOBS = 300
KILLS = 5


class Fleet:
    """Real ``taskgate worker`` processes on the test database."""

    def __init__(self, settings: Settings, data_dir: Path) -> None:
        src = str(Path(taskgate.__file__).resolve().parents[1])
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
            "TASKGATE_DATABASE__URL": settings.database_url,
            "TASKGATE_AUTH__JWT_SECRET": TEST_SECRET,
            "TASKGATE_DATA_DIR": str(data_dir),
            "TASKGATE_LOG_LEVEL": "WARNING",
            "TASKGATE_WORKER__LEASE_SECONDS": "2",
            "TASKGATE_WORKER__POLL_SECONDS": "0.2",
        }
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskgate.cli", "worker", "--concurrency", "8"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.processes if p.poll() is None]

    def stop_all(self) -> list[int]:
        """SIGTERM (drain) every live worker; their exit codes."""
        alive = self.alive()
        for process in alive:
            process.send_signal(signal.SIGTERM)
        return [process.wait(timeout=30) for process in alive]

    def kill_all(self) -> None:
        for process in self.alive():
            process.kill()
            process.wait()


@pytest.fixture
def fleet(settings: Settings, tmp_path: Path) -> Iterator[Fleet]:
    if settings.is_sqlite:
        pytest.skip("multi-process workers need PostgreSQL")
    workers = Fleet(settings, tmp_path)
    yield workers
    workers.kill_all()


async def leased_by(db: Database) -> dict[int, int]:
    """Jobs leased per worker pid (node ids are host:pid:random)."""
    async with db.transaction(write=False) as session:
        rows = await session.execute(
            select(jobs.c.lease_owner, func.count())
            .where(jobs.c.status == "leased")
            .group_by(jobs.c.lease_owner)
        )
        return {int(str(owner).split(":")[-2]): count for owner, count in rows.all()}


async def registered(db: Database, processes: list[subprocess.Popen[bytes]]) -> bool:
    async with db.transaction(write=False) as session:
        pids = set((await session.execute(select(Node.pid))).scalars())
    return all(process.pid in pids for process in processes)


async def test_sigkilled_workers_lose_no_job_and_complete_none_twice(
    fleet: Fleet, db: Database
) -> None:
    rng = random.Random(7)
    async with db.transaction() as session:
        ids = await enqueue_many(
            session,
            [
                # Half write their outcome in ctx.transaction(), half leave it to the worker.
                NewJob(
                    "noop",
                    {"sleep_ms": rng.randint(100, 300), "commit": n % 2 == 0},
                    max_attempts=10,
                )
                for n in range(JOBS)
            ],
        )
    for _ in range(3):
        fleet.start()

    kills = 0
    while kills < KILLS:
        busy = await leased_by(db)
        victims = [p for p in fleet.alive() if busy.get(p.pid, 0) > 0]
        if not victims:
            await asyncio.sleep(0.05)
            continue
        victim = rng.choice(victims)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        fleet.start()
        await asyncio.sleep(rng.uniform(0.3, 0.8))

    async def all_done() -> bool:
        async with db.transaction(write=False) as session:
            done = await session.scalar(
                select(func.count()).where(jobs.c.status == "done", jobs.c.id.in_(ids))
            )
        return done == JOBS

    await eventually(all_done, timeout=120, interval=0.25)
    # A worker still importing when SIGTERM arrives has no handler yet: wait for it to register.
    await eventually(lambda: registered(db, fleet.alive()), timeout=30)
    assert fleet.stop_all() == [0, 0, 0]  # SIGTERM drains and exits cleanly

    async with db.transaction(write=False) as session:
        rows = (
            await session.execute(select(jobs.c.status, jobs.c.completions, jobs.c.attempts))
        ).all()
    assert len(rows) == JOBS
    assert {(row.status, row.completions) for row in rows} == {("done", 1)}
    assert any(row.attempts > 1 for row in rows)  # killed mid-job, run again elsewhere
