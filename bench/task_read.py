"""Authorized reads with an API key on PostgreSQL, against a bare Starlette app:
``GET /api/v1/users/me`` and ``GET /api/v1/tasks/{id}`` (a task of the key's user, in its
default project), both measured in the same run as the bare app, in alternating rounds.

Authorization runs on every request (the caller's grants, the task's project and owner), so
this is where a slower authorization would show. Compare the ratios before and after a change
to it, on the same machine, with the same command.

Goal: each ratio stays within 10 % of what it was before the change (there is no absolute
goal: ``users_me`` holds that one).
Run: ``python -m bench task_read`` (BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_ROUNDS to vary).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.harness import free_port, load, python_env, scratch_postgres, server_process
from bench.users_me import (
    CONNECTIONS,
    ROUNDS,
    SECONDS,
    WARMUP_SECONDS,
    Tally,
    api_key,
    measure,
    taskgate_env,
)


def submitted_task(base: str, key: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as client:
        created = client.post(
            "/api/v1/tasks", json={"commands": ["true"]}, headers={"X-API-Key": key}
        )
        created.raise_for_status()
        task_id: str = created.json()["task_id"]
        client.get(f"/api/v1/tasks/{task_id}", headers={"X-API-Key": key}).raise_for_status()
        return task_id


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="taskgate-bench-") as tmp, ExitStack() as stack:
        data_dir = Path(tmp)
        database_url = stack.enter_context(scratch_postgres("taskgate_bench_reads"))
        env = taskgate_env(database_url, data_dir)
        migrate = [sys.executable, "-m", "taskgate.cli", "migrate"]
        subprocess.run(migrate, env=env, check=True, capture_output=True)
        port = free_port()
        serve = ["-m", "taskgate.cli", "serve", "--no-worker", "--port", str(port)]
        taskgate = stack.enter_context(server_process(serve, env, port, data_dir / "tg.log"))
        port = free_port()
        bare_args = ["-m", "uvicorn", "bench.bare_app:app", "--port", str(port)]
        bare_args += ["--log-level", "warning", "--no-access-log"]
        bare = stack.enter_context(
            server_process(bare_args, python_env({}), port, data_dir / "bare.log")
        )
        key = api_key(taskgate.base)
        headers = {"X-API-Key": key}
        task_id = submitted_task(taskgate.base, key)
        targets = [
            (Tally("bare starlette"), bare, f"{bare.base}/", {}),
            (Tally("taskgate /users/me"), taskgate, f"{taskgate.base}/api/v1/users/me", headers),
            (
                Tally("taskgate /tasks/{id}"),
                taskgate,
                f"{taskgate.base}/api/v1/tasks/{task_id}",
                headers,
            ),
        ]
        for _, _, url, target_headers in targets:
            load(url, target_headers, CONNECTIONS, WARMUP_SECONDS)
        for _ in range(ROUNDS):
            for tally, running, url, target_headers in targets:
                measure(tally, running, url, target_headers)
    bare_tally = targets[0][0]
    print(
        f"{CONNECTIONS} connections, {ROUNDS} alternating rounds of {SECONDS / ROUNDS:.0f} s "
        f"per target, one process each (p50/p99: median over rounds)"
    )
    for tally, _, _, _ in targets:
        print(tally.row())
    for tally, _, _, _ in targets[1:]:
        print(
            f"{tally.name}: {tally.rps / bare_tally.rps:.1%} of bare requests/s, "
            f"{bare_tally.cpu_us / tally.cpu_us:.1%} by CPU per request"
        )


if __name__ == "__main__":
    main()
