"""SSE fan-out: N subscribers on one API process, events at a fixed rate into their owner's
stream. Reports delivery latency (event created_at → bytes at the client), server memory per
subscriber, and server CPU per delivery (the figure that does not depend on what else the
machine is running).

One ``taskgate serve --no-worker`` process on PostgreSQL; the events are written by this
process, a writer outside the API (as a worker would be) announcing them with NOTIFY (or
Redis with BENCH_SSE_REDIS=1). Subscribers are opened by BENCH_SSE_CLIENTS client processes
over raw asyncio protocols; on one machine they share its CPUs with the server, and
BENCH_SSE_VERBOSE=1 shows where the time goes (commit, first subscriber, last subscriber).

    BENCH_SSE_SUBSCRIBERS=5000 BENCH_SSE_RATE=10 BENCH_SSE_SECONDS=20 python -m bench sse_fanout

BENCH_SSE_SERVER_SCRIPT runs another script instead of ``taskgate serve`` (a profiling
wrapper; it gets PORT, and SIGUSR1 after the load when BENCH_SSE_PROFILE_SIGNAL=1).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from array import array
from pathlib import Path

import httpx

from bench.harness import free_port, python_env, scratch_postgres, wait_until_listening

SUBSCRIBERS = int(os.environ.get("BENCH_SSE_SUBSCRIBERS", "5000"))
RATE = float(os.environ.get("BENCH_SSE_RATE", "10"))
SECONDS = float(os.environ.get("BENCH_SSE_SECONDS", "20"))
CLIENTS = int(os.environ.get("BENCH_SSE_CLIENTS", "2"))
REDIS_URL = os.environ.get("BENCH_SSE_REDIS_URL", "redis://127.0.0.1:6379/0")
USE_REDIS = os.environ.get("BENCH_SSE_REDIS", "") == "1"
# On a shared machine, a negative value (root only) keeps other load from being measured.
NICE = int(os.environ.get("BENCH_SSE_NICE", "0"))
GOAL_P99_MS = 200.0
GOAL_KIB_PER_SUBSCRIBER = 50.0
ADMIN_PASSWORD = "bench-admin-password"
COMMITTED: dict[int, float] = {}  # event id → when its commit returned to the writer
_ID = re.compile(rb"(?m)^id: (\d+)\n")


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SUBSCRIBERS + 1000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))


def _niceness() -> None:
    if NICE:
        os.nice(NICE)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------- client process


class _Subscriber(asyncio.Protocol):
    """Records (event id, arrival time) straight from the socket; parses nothing else."""

    def __init__(self, request: bytes, ids: array[int], times: array[float]) -> None:
        self.request = request
        self.ids = ids
        self.times = times
        self.buffer = b""
        self.started = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer + data
        if not self.started:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = buffer
                return
            if not head.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(RuntimeError(head.decode(errors="replace")))
                return
            self.started = True
            self.ready.set_result(None)
            buffer = rest
        cut = buffer.rfind(b"\n")
        if cut < 0:
            self.buffer = buffer
            return
        for match in _ID.findall(buffer, 0, cut + 1):
            self.ids.append(int(match))
            self.times.append(now)
        self.buffer = buffer[cut + 1 :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before the response"))


async def _client(port: int, token: str, count: int, output: str) -> None:
    loop = asyncio.get_running_loop()
    request = (
        "GET /api/v1/stream/sse HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    ids: array[int] = array("q")
    times: array[float] = array("d")
    transports: list[asyncio.Transport] = []
    for start in range(0, count, 100):
        batch = []
        for _ in range(min(100, count - start)):
            transport, protocol = await loop.create_connection(
                lambda: _Subscriber(request, ids, times), "127.0.0.1", port
            )
            transports.append(transport)
            batch.append(protocol.ready)
        await asyncio.gather(*batch)
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for connection in transports:
        connection.close()
    _write_client_output(Path(output), ids, times)
    print("done", flush=True)


def _write_client_output(path: Path, ids: array[int], times: array[float]) -> None:
    with path.open("wb") as out:
        out.write(len(ids).to_bytes(8, "little"))
        ids.tofile(out)
        times.tofile(out)


def _read_client_output(path: Path) -> tuple[array[int], array[float]]:
    with path.open("rb") as source:
        count = int.from_bytes(source.read(8), "little")
        ids: array[int] = array("q")
        times: array[float] = array("d")
        ids.fromfile(source, count)
        times.fromfile(source, count)
    return ids, times


# ---------------------------------------------------------------- orchestration


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    extra = {
        "TASKGATE_DATA_DIR": str(data_dir),
        "TASKGATE_DATABASE__URL": database_url,
        "TASKGATE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "TASKGATE_AUTH__JWT_SECRET": "bench-secret-" + "x" * 40,
        "TASKGATE_RATE_LIMIT__STANDARD": "1000000000/minute",
        "TASKGATE_STREAMS__MAX_STREAMS_PER_PRINCIPAL": str(SUBSCRIBERS + 10),
        "TASKGATE_LOG_LEVEL": "WARNING",
    }
    if USE_REDIS:
        extra["TASKGATE_REDIS_URL"] = REDIS_URL
    return python_env(extra)


async def _produce(env: dict[str, str], owner: uuid.UUID) -> dict[int, float]:
    """Events at RATE per second, each in its own transaction; id → created_at (epoch)."""
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
    created: dict[int, float] = {}
    try:
        interval = 1.0 / RATE
        next_at = time.monotonic()
        for index in range(int(RATE * SECONDS)):
            async with db.transaction() as session:
                event = await record_event(
                    session, "bench.tick", owner_id=owner, payload={"index": index}
                )
            created[event.id] = event.created_at.timestamp()
            COMMITTED[event.id] = time.time()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        await bus.stop()
        await db.dispose()
    return created


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


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


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
    clients: list[subprocess.Popen[str]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_listening(base, server, log)
        token, owner = _login(base)
        idle_kib = _rss_kib(server.pid)
        started = time.monotonic()
        share = [SUBSCRIBERS // CLIENTS + (i < SUBSCRIBERS % CLIENTS) for i in range(CLIENTS)]
        outputs = [data_dir / f"client{i}.bin" for i in range(CLIENTS)]
        for count, output in zip(share, outputs, strict=True):
            command = [sys.executable, "-m", "bench.sse_fanout", "--client", str(port), token]
            clients.append(
                subprocess.Popen(
                    [*command, str(count), str(output)],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    preexec_fn=_niceness,
                )
            )
        for client in clients:
            assert client.stdout is not None
            if client.stdout.readline().strip() != "ready":
                raise RuntimeError("a client process failed to connect its subscribers")
        connect_s = time.monotonic() - started
        connected_kib = _rss_kib(server.pid)
        cpu_before = _cpu_seconds(server.pid)
        client_cpu_before = sum(sum(_cpu_seconds(client.pid)) for client in clients)
        created = asyncio.run(_produce(env, owner))
        time.sleep(3.0)  # let the last deliveries land before the clients hang up
        cpu_after = _cpu_seconds(server.pid)
        cpu = (cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1])
        client_cpu = sum(sum(_cpu_seconds(client.pid)) for client in clients)
        if os.environ.get("BENCH_SSE_PROFILE_SIGNAL"):  # a profiling wrapper dumps on it
            server.send_signal(signal.SIGUSR1)
        loaded_kib = _rss_kib(server.pid)
        for client in clients:
            assert client.stdin is not None
            assert client.stdout is not None
            client.stdin.write("stop\n")
            client.stdin.flush()
            client.stdout.readline()
            client.wait(timeout=60)
        if os.environ.get("BENCH_SSE_VERBOSE"):
            print(f"client processes CPU while producing: {client_cpu - client_cpu_before:.2f} s")
        _report(created, outputs, (idle_kib, connected_kib, loaded_kib), connect_s, cpu)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def _report(
    created: dict[int, float],
    outputs: list[Path],
    rss_kib: tuple[int, int, int],
    connect_s: float,
    cpu: tuple[float, float],
) -> None:
    cpu_seconds = cpu[0] + cpu[1]
    idle_kib, connected_kib, loaded_kib = rss_kib
    latencies: list[float] = []
    unexpected = 0
    worst: dict[int, float] = {}
    first: dict[int, float] = {}
    for output in outputs:
        ids, times = _read_client_output(output)
        for event_id, arrived in zip(ids, times, strict=True):
            sent = created.get(event_id)
            if sent is None:
                unexpected += 1
            else:
                latency = (arrived - sent) * 1000
                latencies.append(latency)
                worst[event_id] = max(worst.get(event_id, 0.0), latency)
                first[event_id] = min(first.get(event_id, latency), latency)
    if os.environ.get("BENCH_SSE_VERBOSE"):
        commits = sorted((COMMITTED[i] - created[i]) * 1000 for i in created)
        print(
            f"writer: created_at → commit returned p50 {statistics.median(commits):.1f} ms, "
            f"p99 {_percentile(commits, 0.99):.1f} ms, max {commits[-1]:.1f} ms"
        )
        to_first = sorted(first[i] - (COMMITTED[i] - created[i]) * 1000 for i in first)
        spread = sorted(worst[i] - first[i] for i in first)
        print(
            f"commit → first subscriber p50 {statistics.median(to_first):.1f} ms "
            f"p99 {_percentile(to_first, 0.99):.1f} ms; first → last subscriber "
            f"p50 {statistics.median(spread):.1f} ms p99 {_percentile(spread, 0.99):.1f} ms"
        )
    expected = len(created) * SUBSCRIBERS
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = _percentile(latencies, 0.99) if latencies else float("nan")
    per_sub = (connected_kib - idle_kib) / SUBSCRIBERS
    per_sub_loaded = (loaded_kib - idle_kib) / SUBSCRIBERS
    transport = "redis" if USE_REDIS else "postgres"
    print(
        f"{SUBSCRIBERS} SSE subscribers ({CLIENTS} client processes, connected in "
        f"{connect_s:.1f} s), {len(created)} events at {RATE:g}/s, one API process, "
        f"PostgreSQL, bus={transport}" + (f", nice {NICE}" if NICE else "")
    )
    print(
        f"delivered {len(latencies)}/{expected} ({len(latencies) / max(expected, 1):.2%}), "
        f"unexpected {unexpected}"
    )
    print(
        f"latency created_at → client: p50 {p50:.1f} ms   p99 {p99:.1f} ms   "
        f"max {latencies[-1] if latencies else float('nan'):.1f} ms"
    )
    print(
        f"server RSS: idle {idle_kib / 1024:.1f} MiB, connected {connected_kib / 1024:.1f} MiB, "
        f"after load {loaded_kib / 1024:.1f} MiB → {per_sub:.1f} KiB per subscriber "
        f"({per_sub_loaded:.1f} KiB after load)"
    )
    print(
        f"server CPU while producing: {cpu[0]:.2f} s user + {cpu[1]:.2f} s system → "
        f"{cpu_seconds / max(len(latencies), 1) * 1e6:.1f} µs per delivery "
        f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    ok = p99 < GOAL_P99_MS and per_sub_loaded < GOAL_KIB_PER_SUBSCRIBER
    ok = ok and len(latencies) == expected
    print(
        f"goal p99 < {GOAL_P99_MS:.0f} ms, < {GOAL_KIB_PER_SUBSCRIBER:.0f} KiB per subscriber, "
        f"every event delivered: {'ok' if ok else 'MISSED'}"
    )
    json.dump(
        {
            "p50_ms": p50,
            "p99_ms": p99,
            "kib_per_subscriber": per_sub_loaded,
            "cpu_us_per_delivery": cpu_seconds / max(len(latencies), 1) * 1e6,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _raise_fd_limit()
        port_arg, token_arg, count_arg, output_arg = sys.argv[2:6]
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(_client(int(port_arg), token_arg, int(count_arg), output_arg))
    else:
        main()
