"""Workers killed mid-task: every accepted task still ends once, with the right output.

PostgreSQL only: real ``taskgate worker`` processes share the database with the test.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from taskgate.db.session import Database
from taskgate.models import Event, QueueJob, Run, Task
from taskgate.settings import Settings
from tests.conftest import TEST_SECRET
from tests.support.clients import User
from tests.tasks.flows import submit

ROOT = Path(__file__).resolve().parents[2]
TASKS = 60
MAX_ATTEMPTS = 6
_PR_SET_PDEATHSIG = 1
TERMINAL = ("task.completed", "task.failed", "task.cancelled", "task.timeout")


def _die_with_parent() -> None:
    """Should the test process itself be killed, its workers must not outlive it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Workers:
    """``taskgate worker`` subprocesses, killed and replaced at will."""

    def __init__(self, settings: Settings, data_dir: Path, log: Path) -> None:
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")},
            "PYTHONPATH": str(ROOT / "src"),
            "TASKGATE_DATABASE__URL": settings.database_url,
            "TASKGATE_DATA_DIR": str(data_dir),
            "TASKGATE_AUTH__JWT_SECRET": TEST_SECRET,
            "TASKGATE_LOG_LEVEL": "WARNING",
            "TASKGATE_WORKER__LEASE_SECONDS": "2",
            "TASKGATE_WORKER__POLL_SECONDS": "0.2",
            "TASKGATE_WORKER__MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            # Several test runs may share the server: keep each worker's pool small.
            "TASKGATE_DATABASE__POOL_SIZE": "3",
            "TASKGATE_DATABASE__MAX_OVERFLOW": "2",
        }
        self.log_path = log
        self.log = log.open("ab")
        self.alive: list[subprocess.Popen[bytes]] = []
        self.killed = 0

    def start(self) -> None:
        command = [sys.executable, "-m", "taskgate.cli", "worker", "--concurrency", "2"]
        self.alive.append(
            subprocess.Popen(
                command,
                env=self.env,
                cwd=ROOT,
                stdout=self.log,
                stderr=self.log,
                preexec_fn=_die_with_parent,
            )
        )

    def kill(self, pid: int) -> None:
        for process in self.alive:
            if process.pid == pid:
                process.send_signal(signal.SIGKILL)
                process.wait()
                self.alive.remove(process)
                self.killed += 1
                return

    def stop_all(self) -> None:
        for process in self.alive:
            process.send_signal(signal.SIGKILL)
            process.wait()
        self.alive.clear()
        self.log.close()


@pytest.fixture
def workers(settings: Settings, sandbox_dir: Path, tmp_path: Path) -> Iterator[Workers]:
    if settings.is_sqlite:
        pytest.skip("worker processes share the database: PostgreSQL only")
    pool = Workers(settings, sandbox_dir, tmp_path / "workers.log")
    yield pool
    pool.stop_all()


async def busy_worker_pids(db: Database) -> list[int]:
    """Pids of worker processes holding a task lease right now (node ids are host:pid:x)."""
    async with db.transaction(write=False) as session:
        owners = await session.scalars(
            select(QueueJob.lease_owner).where(QueueJob.status == "leased").distinct()
        )
        return [int(owner.split(":")[1]) for owner in owners if owner]


async def test_killed_workers_lose_no_task(
    client: httpx.AsyncClient,
    db: Database,
    alice: User,
    workers: Workers,
    settings_factory: Callable[..., Settings],
) -> None:
    submitted = {}
    for n in range(TASKS):
        created = await submit(client, alice, commands=[f"sleep 0.2; echo {n}"])
        submitted[created["task_id"]] = n
    for _ in range(3):
        workers.start()
    rng = random.Random(7)
    deadline = time.monotonic() + 300  # generous: a loaded CI machine starts workers slowly
    while True:
        async with db.transaction(write=False) as session:
            open_tasks = await session.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.status.not_in(["COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"]))
            )
        if open_tasks == 0:
            break
        if time.monotonic() > deadline:
            tail = workers.log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{open_tasks} tasks never finished; workers said:\n{tail}")
        await asyncio.sleep(rng.uniform(0.3, 0.8))  # chaos: kill at a random moment
        # A dead worker's jobs stay leased until their lease expires: pick among the living.
        living = {process.pid for process in workers.alive}
        busy = [pid for pid in await busy_worker_pids(db) if pid in living]
        if workers.killed < 8 and busy:
            workers.kill(rng.choice(busy))
            workers.start()

    async with db.transaction(write=False) as session:
        tasks = list((await session.scalars(select(Task))).all())
        terminal = Counter(
            (await session.scalars(select(Event.task_id).where(Event.type.in_(TERMINAL)))).all()
        )
        runs = Counter((await session.scalars(select(Run.task_id))).all())
    assert workers.killed >= 3
    assert len(tasks) == TASKS
    for task in tasks:
        n = submitted[str(task.id)]
        if task.status == "FAILED":
            # Only a task whose every attempt died with its worker may give up.
            assert task.error_code == "WORKER_LOST", task.error
            assert "lease expired" in (task.error or ""), task.error
            assert terminal[task.id] == 1
            continue
        assert task.status == "COMPLETED", (task.status, task.error)
        assert task.result == f"$ sleep 0.2; echo {n}\n{n}\n"
        assert terminal[task.id] == 1
        assert runs[task.id] == task.attempts
    assert any(task.attempts > 1 for task in tasks), "no kill hit a running task"
    assert all(count == 1 for count in terminal.values())
