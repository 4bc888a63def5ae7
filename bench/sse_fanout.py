"""SSE fan-out: N subscribers on one API process, events at a fixed rate into their owner's
stream. Reports delivery latency, server memory per subscriber, and server CPU per delivery
(the figure that does not depend on what else the machine is running).

One ``taskgate serve --no-worker`` process on PostgreSQL; the events are written by this
process, a writer outside the API (as a worker would be) announcing them with NOTIFY (or
Redis with BENCH_SSE_REDIS=1). Subscribers are opened by BENCH_SSE_CLIENTS client processes
(``bench/_sse_client.py``). On one machine they share its CPUs with the server, so the
latency quoted is the server's: event created_at → the frame in the subscriber's socket,
stamped by the kernel on arrival (SO_TIMESTAMPNS), not when a busy client process got round
to reading it (that figure is shown too).

The same clients then follow a bare uvloop server that writes the same frames at the same
rate, batching what fell due while it was busy as the server does (``bench/_sse_floor.py``):
the floor for one process on this machine, measured under the same load. The time each
server spent waiting for a CPU is shown: on a shared machine it explains most of a bad p99.
BENCH_SSE_FLOOR=0 skips the floor; BENCH_SSE_VERBOSE=1 splits the server's time (commit,
first subscriber, last subscriber).

    BENCH_SSE_SUBSCRIBERS=5000 BENCH_SSE_RATE=10 BENCH_SSE_SECONDS=20 python -m bench sse_fanout

BENCH_SSE_SERVER_SCRIPT runs another script instead of ``taskgate serve`` (a profiling
wrapper; it gets PORT, and SIGUSR1 after the load when BENCH_SSE_PROFILE_SIGNAL=1).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench._sse_client import TICK_SECONDS, Clients
from bench._sse_measure import Latencies, Usage, rss_kib, spread
from bench.harness import free_port, python_env, scratch_postgres, wait_until_listening

SUBSCRIBERS = int(os.environ.get("BENCH_SSE_SUBSCRIBERS", "5000"))
RATE = float(os.environ.get("BENCH_SSE_RATE", "10"))
SECONDS = float(os.environ.get("BENCH_SSE_SECONDS", "20"))
CLIENTS = int(os.environ.get("BENCH_SSE_CLIENTS", "2"))
REDIS_URL = os.environ.get("BENCH_SSE_REDIS_URL", "redis://127.0.0.1:6379/0")
USE_REDIS = os.environ.get("BENCH_SSE_REDIS", "") == "1"
FLOOR = os.environ.get("BENCH_SSE_FLOOR", "1") != "0"
VERBOSE = bool(os.environ.get("BENCH_SSE_VERBOSE"))
# A negative value (root only) favours the server and clients over other load; with the
# kernel's autogroup on, only over processes of the same session.
NICE = int(os.environ.get("BENCH_SSE_NICE", "0"))
SETTLE_SECONDS = 3.0  # after the last event, before the clients hang up
GOAL_P99_MS = 200.0
GOAL_KIB_PER_SUBSCRIBER = 50.0
ADMIN_PASSWORD = "bench-admin-password"


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SUBSCRIBERS + 1000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))


def _niceness() -> None:
    if NICE:
        os.nice(NICE)


@dataclass
class Produced:
    """Per event id: its created_at, and when its commit returned to the writer (epoch)."""

    created: dict[int, float]
    committed: dict[int, float]


@dataclass
class Run:
    """One server followed by the clients: what they received, and what it cost."""

    latencies: Latencies
    events: int
    usage: Usage
    seconds: float


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    extra = {
        "TASKGATE_DATA_DIR": str(data_dir),
        "TASKGATE_DATABASE__URL": database_url,
        "TASKGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "TASKGATE_AUTH__JWT_SECRET": "bench-secret-" + "x" * 40,
        "TASKGATE_RATE_LIMIT__STANDARD": "1000000000/minute",
        "TASKGATE_RATE_LIMIT__PROJECT": "1000000000/minute",
        "TASKGATE_STREAMS__MAX_STREAMS_PER_PRINCIPAL": str(SUBSCRIBERS + 10),
        "TASKGATE_LOG_LEVEL": "WARNING",
    }
    if USE_REDIS:
        extra["TASKGATE_REDIS_URL"] = REDIS_URL
    return python_env(extra)


async def _produce(env: dict[str, str], owner: uuid.UUID) -> Produced:
    """Events at RATE per second, each in its own transaction."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("TASKGATE_")})
    from taskgate.db.engine import create_engine
    from taskgate.db.session import Database
    from taskgate.events.bus import EventBus
    from taskgate.events.outbox import record_event
    from taskgate.settings import Settings

    settings = Settings()
    db = Database(create_engine(settings))
    bus = EventBus(settings, db)
    await bus.open(listen=False)
    produced = Produced({}, {})
    try:
        interval = 1.0 / RATE
        next_at = time.monotonic()
        for index in range(int(RATE * SECONDS)):
            async with db.transaction() as session:
                event = await record_event(
                    session, "bench.tick", owner_id=owner, payload={"index": index}
                )
            produced.created[event.id] = event.created_at.timestamp()
            produced.committed[event.id] = time.time()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        await bus.stop()
        await db.dispose()
    return produced


def _login(base: str) -> tuple[str, uuid.UUID]:
    with httpx.Client(base_url=base, timeout=30) as client:
        response = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        response.raise_for_status()
        token: str = response.json()["access"]
        me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        me.raise_for_status()
        # Warm the stream code path so idle memory includes it.
        with client.stream(
            "GET", "/api/v1/stream/sse", headers={"Authorization": f"Bearer {token}"}
        ) as stream:
            stream.raise_for_status()
        return token, uuid.UUID(me.json()["user"]["id"])


def main() -> None:
    _raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="taskgate-bench-sse-") as tmp:
        data_dir = Path(tmp)
        with scratch_postgres("taskgate_bench_sse") as database_url:
            env = _env(database_url, data_dir)
            subprocess.run(
                [sys.executable, "-m", "taskgate.cli", "migrate"],
                env=env,
                check=True,
                capture_output=True,
            )
            _run(env, data_dir)
        if FLOOR:
            (data_dir / "floor").mkdir()
            _report_floor(_floor(python_env({}), data_dir / "floor"))


def _run(env: dict[str, str], data_dir: Path) -> None:
    port = free_port()
    log = data_dir / "server.log"
    args = ["-m", "taskgate.cli", "serve", "--no-worker", "--port", str(port)]
    if os.environ.get("BENCH_SSE_SERVER_SCRIPT"):  # e.g. a profiling wrapper
        args = [os.environ["BENCH_SSE_SERVER_SCRIPT"]]
        env = {**env, "PORT": str(port)}
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=out, stderr=out, preexec_fn=_niceness
        )
    clients: Clients | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_listening(base, server, log)
        token, owner = _login(base)
        idle_kib = rss_kib(server.pid)
        started = time.monotonic()
        clients = Clients(port, token, SUBSCRIBERS, CLIENTS, data_dir, env=env, preexec=_niceness)
        clients.wait_ready()
        connect_s = time.monotonic() - started
        connected_kib = rss_kib(server.pid)
        before = Usage.of(server.pid)
        clients_before = [Usage.of(pid) for pid in clients.pids]
        started = time.monotonic()
        produced = asyncio.run(_produce(env, owner))
        time.sleep(SETTLE_SECONDS)
        usage = Usage.of(server.pid) - before
        seconds = time.monotonic() - started
        client_cpu = sum(
            (Usage.of(pid) - earlier).cpu
            for pid, earlier in zip(clients.pids, clients_before, strict=True)
        )
        if os.environ.get("BENCH_SSE_PROFILE_SIGNAL"):  # a profiling wrapper dumps on it
            server.send_signal(signal.SIGUSR1)
        loaded_kib = rss_kib(server.pid)
        records = clients.stop()
        if VERBOSE:
            print(f"client processes CPU while producing: {client_cpu:.2f} s")
        latencies = Latencies.of(records, produced.created, produced.committed)
        run = Run(latencies, len(produced.created), usage, seconds)
        _report(run, produced, (idle_kib, connected_kib, loaded_kib), connect_s)
    finally:
        if clients is not None:
            clients.kill()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def _floor(env: dict[str, str], data_dir: Path) -> Run:
    port = free_port()
    command = [sys.executable, "-m", "bench._sse_floor", str(port), str(RATE), str(SECONDS)]
    floor = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_niceness,
    )
    clients: Clients | None = None
    try:
        assert floor.stdin is not None
        assert floor.stdout is not None
        if floor.stdout.readline().strip() != "listening":
            raise RuntimeError("the floor server did not start")
        clients = Clients(port, "-", SUBSCRIBERS, CLIENTS, data_dir, env=env, preexec=_niceness)
        clients.wait_ready()
        before = Usage.of(floor.pid)
        started = time.monotonic()
        floor.stdin.write("go\n")
        floor.stdin.flush()
        if floor.stdout.readline().strip() != "done":
            raise RuntimeError("the floor server failed")
        due = {int(key): value for key, value in json.loads(floor.stdout.readline()).items()}
        time.sleep(SETTLE_SECONDS)
        usage = Usage.of(floor.pid) - before
        seconds = time.monotonic() - started
        latencies = Latencies.of(clients.stop(), due, due)
        floor.stdin.write("stop\n")
        floor.stdin.flush()
        floor.wait(timeout=15)
        return Run(latencies, len(due), usage, seconds)
    finally:
        if clients is not None:
            clients.kill()
        if floor.poll() is None:
            floor.kill()


def _cpu_line(run: Run) -> str:
    per_delivery = run.usage.cpu / max(run.latencies.delivered, 1) * 1e6
    return (
        f"CPU {run.usage.user:.2f} s user + {run.usage.system:.2f} s system → "
        f"{per_delivery:.1f} µs per delivery; waited for a CPU {run.usage.waiting:.1f} s "
        f"of {run.seconds:.0f} s"
    )


def _report(run: Run, produced: Produced, rss: tuple[int, int, int], connect_s: float) -> None:
    latencies = run.latencies
    idle_kib, connected_kib, loaded_kib = rss
    if VERBOSE:
        created = produced.created
        commits = [(produced.committed[i] - created[i]) * 1000 for i in created]
        print(f"writer: created_at → commit returned {spread(commits)}")
        print(
            f"commit returned → first subscriber's socket {spread(list(latencies.first.values()))}"
        )
        print(f"first → last subscriber's socket {spread(latencies.first_to_last())}")
    expected = run.events * SUBSCRIBERS
    per_sub = (connected_kib - idle_kib) / SUBSCRIBERS
    per_sub_loaded = (loaded_kib - idle_kib) / SUBSCRIBERS
    transport = "redis" if USE_REDIS else "postgres"
    print(
        f"{SUBSCRIBERS} SSE subscribers ({CLIENTS} client processes, connected in "
        f"{connect_s:.1f} s), {run.events} events at {RATE:g}/s, one API process, "
        f"PostgreSQL, bus={transport}" + (f", nice {NICE}" if NICE else "")
    )
    print(
        f"delivered {latencies.delivered}/{expected} "
        f"({latencies.delivered / max(expected, 1):.2%}), unexpected {latencies.unexpected}"
    )
    print(f"latency created_at → subscriber's socket: {spread(latencies.to_socket)}")
    print(f"  commit returned → subscriber's socket: {spread(latencies.after_sent)}")
    print(
        f"  created_at → read by the client process ({TICK_SECONDS * 1000:g} ms tick): "
        f"{spread(latencies.to_read)}"
    )
    print(
        f"server RSS: idle {idle_kib / 1024:.1f} MiB, connected {connected_kib / 1024:.1f} MiB, "
        f"after load {loaded_kib / 1024:.1f} MiB → {per_sub:.1f} KiB per subscriber "
        f"({per_sub_loaded:.1f} KiB after load)"
    )
    print(
        f"server {_cpu_line(run)} (load average now {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs)"
    )
    ok = latencies.p99 < GOAL_P99_MS and per_sub_loaded < GOAL_KIB_PER_SUBSCRIBER
    ok = ok and latencies.delivered == expected
    print(
        f"goal p99 < {GOAL_P99_MS:.0f} ms, < {GOAL_KIB_PER_SUBSCRIBER:.0f} KiB per subscriber, "
        f"every event delivered: {'ok' if ok else 'MISSED'}"
    )
    json.dump(
        {
            "p50_ms": latencies.p50,
            "p99_ms": latencies.p99,
            "kib_per_subscriber": per_sub_loaded,
            "cpu_us_per_delivery": run.usage.cpu / max(latencies.delivered, 1) * 1e6,
            "server_cpu_wait_s": run.usage.waiting,
        },
        sys.stdout,
    )
    print()


def _report_floor(run: Run) -> None:
    latencies = run.latencies
    expected = run.events * SUBSCRIBERS
    print(
        f"floor (bare uvloop writing the same frames, same clients): delivered "
        f"{latencies.delivered}/{expected}; event due → subscriber's socket "
        f"{spread(latencies.to_socket)}"
    )
    print(f"floor {_cpu_line(run)} (load average now {os.getloadavg()[0]:.1f})")
    json.dump(
        {
            "floor_p50_ms": latencies.p50,
            "floor_p99_ms": latencies.p99,
            "floor_cpu_us_per_delivery": run.usage.cpu / max(latencies.delivered, 1) * 1e6,
            "floor_cpu_wait_s": run.usage.waiting,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
