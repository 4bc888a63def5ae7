"""POST /api/v1/tasks (a one-command task) on PostgreSQL, against a raw asyncpg INSERT loop.

The server runs ``taskgate serve --no-worker`` (one process), so no worker competes for the
CPU; each accepted task is a session row, the task row, its task.created event, its queue job
and an audit record in one transaction. The ceiling, measured in the same run with the same
number of connections, is a loop of single-row INSERTs into a copy of the tasks table (same
columns and indexes) straight from asyncpg. Goal: >= 25 % of that rate, p99 < 50 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

from bench._task_server import api_key, migrate, taskgate_env
from bench.harness import free_port, scratch_postgres, server_process

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP_SECONDS = 2.0
GOAL_RATIO = 0.25
GOAL_P99_MS = 50.0
BODY = json.dumps({"commands": ["true"]}).encode()


@dataclass(frozen=True)
class Rate:
    name: str
    count: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000

    def row(self) -> str:
        p50 = statistics.median(self.latencies) * 1000
        return (
            f"{self.name:<26} {self.per_second:>8.0f} /s   p50 {p50:6.2f} ms   "
            f"p99 {self.percentile(0.99):6.2f} ms   ({self.count} in {self.seconds:.1f} s)"
        )


async def post_load(url: str, headers: dict[str, str], body: bytes, seconds: float) -> Rate:
    """Keep-alive POSTs over raw streams from CONNECTIONS connections; every answer must be 201."""
    parsed = httpx.URL(url)
    lines = [f"POST {parsed.raw_path.decode()} HTTP/1.1", f"Host: {parsed.host}:{parsed.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    failures: list[bytes] = []
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                answer = await reader.readexactly(int(match.group(1)) if match else 0)
                latencies.append(time.perf_counter() - started)
                if not head.startswith(b"HTTP/1.1 201"):
                    failures.append(head.split(b"\r\n", 1)[0] + b" " + answer[:200])
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]!r}")
    return Rate("taskgate POST /tasks", len(latencies), elapsed, latencies)


_INSERT = """
INSERT INTO bench_tasks (id, owner_id, project_id, session_id, kind, status, input, attachments,
    acceptance_criteria, context, labels, timeout_seconds, priority, input_tokens,
    output_tokens, cost_usd, attempts, queue_job_id, created_at, updated_at)
VALUES ($1, $2, $7, $3, 'commands', 'QUEUED', $4::jsonb, '[]', '[]', '{}', '[]', 300, 0, 0, 0,
    0, 0, $5, $6, $6)
"""


async def prepare_raw_table(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("DROP TABLE IF EXISTS bench_tasks")
        await connection.execute("CREATE TABLE bench_tasks (LIKE tasks INCLUDING ALL)")
    finally:
        await connection.close()


async def raw_inserts(dsn: str, seconds: float) -> Rate:
    """The ceiling: one row per INSERT (autocommit) into an equivalent table."""
    setup = await asyncpg.connect(dsn)
    try:
        owner, project = await setup.fetchrow(
            "SELECT u.id, p.id FROM users u JOIN projects p ON p.slug = 'default-' || u.username"
            " LIMIT 1"
        )
    finally:
        await setup.close()
    payload = json.dumps({"commands": ["true"]})
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            insert = await conn.prepare(_INSERT)
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                now = datetime.now(UTC)
                await insert.fetch(
                    uuid.uuid4(), owner, uuid.uuid4(), payload, uuid.uuid4(), now, project
                )
                latencies.append(time.perf_counter() - started)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONNECTIONS)))
    return Rate("raw asyncpg INSERT", len(latencies), time.perf_counter() - started, latencies)


def _merge(rounds: list[Rate]) -> Rate:
    return Rate(
        rounds[0].name,
        sum(r.count for r in rounds),
        sum(r.seconds for r in rounds),
        [latency for r in rounds for latency in r.latencies],
    )


def main() -> None:
    raw_rounds: list[Rate] = []
    api_rounds: list[Rate] = []
    cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="taskgate-bench-") as tmp:
        data_dir = Path(tmp)
        with scratch_postgres("taskgate_bench_tasks") as database_url:
            # A pool without overflow: with the default 10 + 10, the load would keep opening and
            # closing overflow connections (30 leaves room for the raw loop's 50 under the
            # server's default max_connections of 100).
            env = taskgate_env(database_url, data_dir) | {
                "TASKGATE_DATABASE__POOL_SIZE": "30",
                "TASKGATE_DATABASE__MAX_OVERFLOW": "0",
            }
            migrate(env)
            dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
            port = free_port()
            args = ["-m", "taskgate.cli", "serve", "--no-worker", "--port", str(port)]
            with server_process(args, env, port, data_dir / "taskgate.log") as running:
                headers = {"X-API-Key": api_key(running.base)}
                url = f"{running.base}/api/v1/tasks"
                asyncio.run(prepare_raw_table(dsn))
                asyncio.run(post_load(url, headers, BODY, WARMUP_SECONDS))
                # Alternating rounds: whatever else the machine does weighs on both alike.
                for _ in range(ROUNDS):
                    raw_rounds.append(asyncio.run(raw_inserts(dsn, SECONDS / ROUNDS)))
                    before = running.cpu_seconds()
                    api_rounds.append(asyncio.run(post_load(url, headers, BODY, SECONDS / ROUNDS)))
                    cpu += running.cpu_seconds() - before
    raw, taskgate = _merge(raw_rounds), _merge(api_rounds)
    ratio = taskgate.per_second / raw.per_second
    p99 = taskgate.percentile(0.99)
    print(
        f"{CONNECTIONS} connections, {ROUNDS} alternating rounds, {SECONDS:.0f} s each side, "
        "one server process (--no-worker)"
    )
    print(raw.row())
    print(taskgate.row())
    print(f"server CPU per accepted task: {cpu / taskgate.count * 1e6:.0f} us")
    verdict = "ok" if ratio >= GOAL_RATIO and p99 < GOAL_P99_MS else "MISSED"
    print(
        f"ratio {ratio:.1%} of raw (goal >= {GOAL_RATIO:.0%}), p99 {p99:.2f} ms "
        f"(goal < {GOAL_P99_MS:.0f} ms): {verdict}"
    )


if __name__ == "__main__":
    main()
