"""GET /api/v1/users/me with an API key on PostgreSQL, against a bare Starlette app.

Both run at once as real uvicorn processes with the same settings (one process, httptools,
uvloop, access log off) on the loopback interface, and are loaded in alternating rounds by the
same closed-loop client at 50 keep-alive connections, so that whatever else the machine is
doing weighs on both alike. Besides requests/s and latency it reports the CPU time each server
spent per request, which other load on the machine does not distort.

Goal: taskgate >= 35 % of the bare app's requests/s, p99 < 20 ms.
Run: ``python -m bench users_me`` (BENCH_SECONDS, BENCH_CONNECTIONS, BENCH_ROUNDS to vary).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.harness import (
    LoadResult,
    Server,
    free_port,
    load,
    python_env,
    scratch_postgres,
    server_process,
)

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
WARMUP_SECONDS = 2.0
GOAL_RATIO = 0.35
GOAL_P99_MS = 20.0
ADMIN_PASSWORD = "bench-admin-password"


@dataclass
class Tally:
    name: str
    rounds: list[LoadResult] = field(default_factory=list)
    cpu_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.rounds)

    @property
    def rps(self) -> float:
        return self.requests / sum(r.seconds for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds)

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.requests * 1e6

    def row(self) -> str:
        return (
            f"{self.name:<20} {self.rps:>8.0f} req/s  p50 {self.p50_ms:6.2f} ms  "
            f"p99 {self.p99_ms:6.2f} ms  cpu {self.cpu_us:5.0f} us/req  "
            f"({self.requests} requests, {self.rounds[0].tool})"
        )


def taskgate_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return python_env(
        {
            "TASKGATE_DATA_DIR": str(data_dir),
            "TASKGATE_DATABASE__URL": database_url,
            "TASKGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "TASKGATE_AUTH__JWT_SECRET": "bench-secret-" + "x" * 40,
            # A budget the load cannot spend: the limiter still runs on every request.
            "TASKGATE_RATE_LIMIT__STANDARD": "1000000000/minute",
            "TASKGATE_RATE_LIMIT__PROJECT": "1000000000/minute",
        }
    )


def api_key(base: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as client:
        login = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access']}"}
        created = client.post("/api/v1/api-keys", json={"name": "bench"}, headers=headers)
        created.raise_for_status()
        key: str = created.json()["key"]
        client.get("/api/v1/users/me", headers={"X-API-Key": key}).raise_for_status()
        return key


def measure(tally: Tally, running: Server, url: str, headers: dict[str, str]) -> None:
    before = running.cpu_seconds()
    result = load(url, headers, CONNECTIONS, SECONDS / ROUNDS)
    tally.cpu_seconds += running.cpu_seconds() - before
    if result.errors:
        raise RuntimeError(f"{result.errors} failed requests against {url}")
    tally.rounds.append(result)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="taskgate-bench-") as tmp, ExitStack() as stack:
        data_dir = Path(tmp)
        database_url = stack.enter_context(scratch_postgres("taskgate_bench"))
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
        targets = [
            (Tally("bare starlette"), bare, f"{bare.base}/", {}),
            (
                Tally("taskgate /users/me"),
                taskgate,
                f"{taskgate.base}/api/v1/users/me",
                {"X-API-Key": api_key(taskgate.base)},
            ),
        ]
        for _, _, url, headers in targets:
            load(url, headers, CONNECTIONS, WARMUP_SECONDS)
        for _ in range(ROUNDS):
            for tally, running, url, headers in targets:
                measure(tally, running, url, headers)
    report(targets[0][0], targets[1][0])


def report(bare: Tally, taskgate: Tally) -> None:
    ratio = taskgate.rps / bare.rps
    cpu_ratio = bare.cpu_us / taskgate.cpu_us
    print(
        f"{CONNECTIONS} connections, {ROUNDS} alternating rounds of {SECONDS / ROUNDS:.0f} s "
        f"per server, one process each (p50/p99: median over rounds)"
    )
    print(bare.row())
    print(taskgate.row())
    verdict = "ok" if ratio >= GOAL_RATIO and taskgate.p99_ms < GOAL_P99_MS else "MISSED"
    print(
        f"ratio {ratio:.1%} of bare requests/s (goal >= {GOAL_RATIO:.0%}), "
        f"{cpu_ratio:.1%} by CPU per request; p99 {taskgate.p99_ms:.2f} ms "
        f"(goal < {GOAL_P99_MS:.0f} ms): {verdict}"
    )


if __name__ == "__main__":
    main()
