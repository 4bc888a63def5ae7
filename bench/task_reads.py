"""Reading tasks with an API key on PostgreSQL at 100,000 tasks in 100 projects, against a bare
Starlette app.

A user (not an administrator) owns 100 projects; 100,000 finished tasks are spread over them.
With its API key the load reads one task by id (``GET /api/v1/tasks/{id}``) and the first page
of one project's list (``GET /api/v1/tasks?limit=25`` with ``X-Tenant-ID``), in alternating
rounds with the bare app on the same closed-loop client, so whatever else the machine does
weighs on all alike. Besides requests/s and latency it reports the CPU time per request.

Goals: a list page answers in < 20 ms p99 when the server is not saturated (measured apart,
at LATENCY_CONNECTIONS); the read by id and the list keep their ratio to bare across changes.
Run: ``python -m bench task_reads`` (BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_ROUNDS, BENCH_TASKS).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx

from bench._task_server import ADMIN_PASSWORD, migrate, taskgate_env
from bench.harness import free_port, load, python_env, scratch_postgres, server_process
from bench.users_me import CONNECTIONS, ROUNDS, SECONDS, WARMUP_SECONDS, Tally, measure

TASKS = int(os.environ.get("BENCH_TASKS", "100000"))
PROJECTS = 100
GOAL_LIST_P99_MS = 20.0
# Concurrent clients for the list latency pass: a page's own time, not 50 in a queue.
LATENCY_CONNECTIONS = 2

_SEED = """
INSERT INTO tasks (id, owner_id, project_id, kind, status, input, attachments,
    acceptance_criteria, context, labels, timeout_seconds, priority, input_tokens,
    output_tokens, cost_usd, attempts, result, created_at, updated_at, completed_at)
SELECT gen_random_uuid(), $1, ($2::uuid[])[1 + g % cardinality($2::uuid[])], 'commands',
    'COMPLETED', '{"commands": ["true"]}'::jsonb, '[]', '[]', '{}', '[]', 300, 0, 0, 0, 0, 1,
    'done', now() - g * interval '1 second', now() - g * interval '1 second',
    now() - g * interval '1 second'
FROM generate_series(1, $3) AS g
"""


def _reader(base: str) -> tuple[str, list[str]]:
    """A plain user with an API key and PROJECTS projects of its own: (key, project slugs)."""
    with httpx.Client(base_url=base, timeout=30) as client:
        login = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['access']}"}
        password = "reader-password-1234"
        client.post(
            "/api/v1/users", json={"username": "reader", "password": password}, headers=admin
        ).raise_for_status()
        login = client.post("/api/v1/auth/login", json={"username": "reader", "password": password})
        login.raise_for_status()
        reader = {"Authorization": f"Bearer {login.json()['access']}"}
        slugs = []
        for number in range(PROJECTS - 1):  # and the default project
            made = client.post(
                "/api/v1/projects", json={"name": f"Project {number}"}, headers=reader
            )
            made.raise_for_status()
            slugs.append(made.json()["slug"])
        created = client.post("/api/v1/api-keys", json={"name": "bench"}, headers=reader)
        created.raise_for_status()
        return created.json()["key"], slugs


async def _seed(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        owner = await connection.fetchval("SELECT id FROM users WHERE username = 'reader'")
        projects = [
            row["id"]
            for row in await connection.fetch(
                "SELECT id FROM projects WHERE slug LIKE 'project-%' OR slug = 'default-reader'"
            )
        ]
        assert len(projects) == PROJECTS, len(projects)
        await connection.execute(_SEED, owner, projects, TASKS)
        await connection.execute("ANALYZE tasks")
    finally:
        await connection.close()


def _one_task(base: str, key: str, slug: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get(
            "/api/v1/tasks", params={"limit": 25}, headers={"X-API-Key": key, "X-Tenant-ID": slug}
        )
        page.raise_for_status()
        body = page.json()
        rows = body.get("results") or body.get("tasks") or []
        assert len(rows) == 25, body
        task_id: str = rows[0].get("id") or rows[0]["task_id"]
        return task_id


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="taskgate-bench-") as tmp, ExitStack() as stack:
        data_dir = Path(tmp)
        database_url = stack.enter_context(scratch_postgres("taskgate_bench_reads"))
        env = taskgate_env(database_url, data_dir)
        migrate(env)
        port = free_port()
        serve = ["-m", "taskgate.cli", "serve", "--no-worker", "--port", str(port)]
        taskgate = stack.enter_context(server_process(serve, env, port, data_dir / "tg.log"))
        port = free_port()
        bare_args = ["-m", "uvicorn", "bench.bare_app:app", "--port", str(port)]
        bare_args += ["--log-level", "warning", "--no-access-log"]
        bare = stack.enter_context(
            server_process(bare_args, python_env({}), port, data_dir / "bare.log")
        )
        key, slugs = _reader(taskgate.base)
        asyncio.run(_seed(database_url.replace("postgresql+asyncpg://", "postgresql://", 1)))
        slug = slugs[len(slugs) // 2]
        task_id = _one_task(taskgate.base, key, slug)
        headers = {"X-API-Key": key}
        targets = [
            (Tally("bare starlette"), bare, f"{bare.base}/", {}),
            (Tally("task by id"), taskgate, f"{taskgate.base}/api/v1/tasks/{task_id}", headers),
            (
                Tally("task list page"),
                taskgate,
                f"{taskgate.base}/api/v1/tasks?limit=25",
                {**headers, "X-Tenant-ID": slug},
            ),
        ]
        for _, _, url, extra in targets:
            load(url, extra, CONNECTIONS, WARMUP_SECONDS)
        for _ in range(ROUNDS):
            for tally, running, url, extra in targets:
                measure(tally, running, url, extra)
        _, _, list_url, list_headers = targets[2]
        latency = load(list_url, list_headers, LATENCY_CONNECTIONS, SECONDS / ROUNDS)
    report(*(target[0] for target in targets))
    verdict = "ok" if latency.p99_ms < GOAL_LIST_P99_MS else "MISSED"
    print(
        f"list page at {LATENCY_CONNECTIONS} connections: p50 {latency.p50_ms:.2f} ms, "
        f"p99 {latency.p99_ms:.2f} ms (goal < {GOAL_LIST_P99_MS:.0f} ms): {verdict}"
    )


def report(bare: Tally, by_id: Tally, listing: Tally) -> None:
    print(
        f"{TASKS} tasks in {PROJECTS} projects; {CONNECTIONS} connections, {ROUNDS} alternating "
        f"rounds of {SECONDS / ROUNDS:.0f} s per target (p50/p99: median over rounds)"
    )
    for tally in (bare, by_id, listing):
        print(tally.row())
    for tally in (by_id, listing):
        print(
            f"{tally.name}: {tally.rps / bare.rps:.1%} of bare requests/s, "
            f"{bare.cpu_us / tally.cpu_us:.1%} by CPU per request"
        )


if __name__ == "__main__":
    main()
