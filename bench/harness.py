"""What every benchmark needs: servers as real subprocesses, a scratch PostgreSQL database,
and a closed-loop HTTP load generator (wrk when installed, else a small asyncio client)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_DSN = os.environ.get("TASKGATE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def python_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.update(extra)
    return env


@contextmanager
def scratch_postgres(name: str) -> Iterator[str]:
    """A database created for the run and dropped at its end; yields its asyncpg URL."""

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_DSN.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True)
class Server:
    base: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_process(args: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[Server]:
    """Run ``python <args>`` until it answers HTTP on ``port``; stop it afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *args], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_listening(base, process, log)
            yield Server(base, process.pid)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def server(args: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """Like ``server_process``, yielding only the base URL."""
    with server_process(args, env, port, log) as running:
        yield running.base


def wait_until_listening(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}):\n{log.read_text()}")
        try:
            httpx.get(base + "/", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


@dataclass(frozen=True)
class LoadResult:
    tool: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def load(url: str, headers: dict[str, str], connections: int, seconds: float) -> LoadResult:
    if shutil.which("wrk") and not os.environ.get("BENCH_PYTHON_CLIENT"):
        return _wrk(url, headers, connections, seconds)
    return asyncio.run(_python_load(url, headers, connections, seconds))


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, headers: dict[str, str], connections: int, seconds: float) -> LoadResult:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout

    def latency(percent: str) -> float:
        match = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match is None:
            raise RuntimeError(f"unexpected wrk output:\n{output}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s)", output)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_ok = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+)", output)
    errors = int(non_ok.group(1)) if non_ok else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return LoadResult(
        "wrk",
        int(total.group(1)),
        float(total.group(2)) * _UNITS[total.group(3)] / 1000,
        errors,
        latency("50"),
        latency("99"),
    )


async def _python_load(
    url: str, headers: dict[str, str], connections: int, seconds: float
) -> LoadResult:
    """Keep-alive HTTP/1.1 over raw streams: cheap enough per request to not be the
    bottleneck the way a full client library would be."""
    parsed = httpx.URL(url)
    lines = [f"GET {parsed.raw_path.decode()} HTTP/1.1", f"Host: {parsed.host}:{parsed.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.1 3")):
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return LoadResult(
        "python", len(ordered), elapsed, errors, statistics.median(ordered) * 1000, p99 * 1000
    )
