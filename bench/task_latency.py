"""How fast a task starts and finishes: one ``taskgate worker`` process, PostgreSQL, bwrap.

Tasks (the command ``true``) are submitted one at a time over HTTP to ``taskgate serve
--no-worker``; the next goes once the previous is final. The figures come from the task's own
timestamps: submit -> RUNNING is ``started_at - created_at`` (goals: p50 < 10 ms, p99 < 50 ms)
and end to end is ``completed_at - created_at`` (goal: median < 30 ms). Both are stamped inside
transactions that commit a little later, so the time from sending the request until a reader
sees the final status is printed too (it includes the HTTP round trip and up to one 2 ms poll).
The ceiling printed beside them is the same ``true`` run directly in the sandbox, in this process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from bench._task_server import api_key, migrate, taskgate_env
from bench.harness import ROOT, free_port, scratch_postgres, server

TASKS = int(os.environ.get("BENCH_LATENCY_TASKS", "200"))
WARMUP = 10
GOAL_START_P50_MS, GOAL_START_P99_MS, GOAL_E2E_MS = 10.0, 50.0, 30.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def _wait_final(connection: asyncpg.Connection, task_id: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status: str = await connection.fetchval(
            "SELECT status FROM tasks WHERE id = $1::uuid", task_id
        )
        if status in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            return status
        await asyncio.sleep(0.002)
    raise TimeoutError(f"task {task_id} did not finish")


@dataclass
class Figures:
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


async def _drive(base: str, key: str, dsn: str) -> Figures:
    figures = Figures()
    connection = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}) as client:
            for n in range(WARMUP + TASKS):
                sent = time.perf_counter()
                response = await client.post("/api/v1/tasks", json={"commands": ["true"]})
                response.raise_for_status()
                task_id = response.json()["task_id"]
                status = await _wait_final(connection, task_id)
                seen = time.perf_counter()
                if n < WARMUP:
                    continue
                row = await connection.fetchrow(
                    "SELECT created_at, started_at, completed_at, error FROM tasks "
                    "WHERE id = $1::uuid",
                    task_id,
                )
                if status != "COMPLETED":
                    figures.failures.append(f"{status}: {row['error']}")
                    break  # a broken set-up fails every task alike: say so at once
                created = row["created_at"]
                figures.starts.append((row["started_at"] - created).total_seconds() * 1000)
                figures.ends.append((row["completed_at"] - created).total_seconds() * 1000)
                figures.seen.append((seen - sent) * 1000)
    finally:
        await connection.close()
    return figures


async def _sandbox_ceiling(work: Path) -> float:
    """Median time of ``true`` run straight in the sandbox, the floor under any task."""
    from taskgate.runtime.sandbox import SandboxRequest, select_sandbox

    sandbox = select_sandbox("auto")
    times = []
    for _ in range(50):
        started = time.perf_counter()
        await sandbox.run(SandboxRequest(kind="commands", commands=["true"], work_dir=work))
        times.append((time.perf_counter() - started) * 1000)
    print(f"sandbox backend: {sandbox.name}")
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="taskgate-bench-") as tmp:
        data_dir = Path(tmp)
        data_dir.chmod(0o711)  # the sandbox uid reaches the work dirs inside
        with scratch_postgres("taskgate_bench_latency") as database_url:
            env = taskgate_env(database_url, data_dir)
            migrate(env)
            worker_log = (data_dir / "worker.log").open("wb")
            worker = subprocess.Popen(
                [sys.executable, "-m", "taskgate.cli", "worker"],
                env=env,
                cwd=ROOT,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
            port = free_port()
            args = ["-m", "taskgate.cli", "serve", "--no-worker", "--port", str(port)]
            try:
                with server(args, env, port, data_dir / "taskgate.log") as base:
                    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
                    figures = asyncio.run(_drive(base, api_key(base), dsn))
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
                worker_log.close()
            if figures.failures:
                print(f"a task did not complete: {figures.failures[0]}")
                print((data_dir / "worker.log").read_text()[-2000:])
        ceiling = asyncio.run(_sandbox_ceiling(data_dir / "ceiling"))
    starts, ends, seen = figures.starts, figures.ends, figures.seen
    if not starts:
        print("no task completed: no figures")
        return
    start50, start99 = statistics.median(starts), _percentile(starts, 0.99)
    e2e = statistics.median(ends)
    print(f"{len(starts)} tasks `true`, one at a time, one worker process")
    print(
        f"submit -> RUNNING   p50 {start50:6.2f} ms   p99 {start99:6.2f} ms   "
        f"(goals < {GOAL_START_P50_MS:.0f} / < {GOAL_START_P99_MS:.0f} ms)"
    )
    print(
        f"end to end          p50 {e2e:6.2f} ms   p99 {_percentile(ends, 0.99):6.2f} ms   "
        f"(goal median < {GOAL_E2E_MS:.0f} ms)"
    )
    print(
        f"request -> seen     p50 {statistics.median(seen):6.2f} ms   "
        f"p99 {_percentile(seen, 0.99):6.2f} ms   (POST sent until a reader sees the final status)"
    )
    print(f"ceiling: `true` alone in the sandbox, median {ceiling:.2f} ms")
    met = start50 < GOAL_START_P50_MS and start99 < GOAL_START_P99_MS and e2e < GOAL_E2E_MS
    print("ok" if met else "MISSED")


if __name__ == "__main__":
    main()
