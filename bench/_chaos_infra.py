"""Private infrastructure for the chaos harness: a PostgreSQL cluster and a Redis server of its
own (on free ports, in a temporary directory: never the machine's shared ones), an optional
small tmpfs to fill, and the taskgate processes it kills and restarts."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._task_server import taskgate_env
from bench.harness import ROOT, free_port


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL server binaries")
    return on_path


def _as_postgres(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres account then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(path, account.pw_uid, account.pw_gid)


class PrivatePostgres:
    """A throw-away cluster: trust auth, no fsync, WAL beside the data (never on a tablespace
    a scenario fills)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.log = root / "postgres.log"
        self.port = free_port()
        for path in (self.data, self.sockets):
            path.mkdir(mode=0o700)
            _give_to_postgres(path)
        self.log.touch()
        _give_to_postgres(self.log)
        initdb = [_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        subprocess.run(
            _as_postgres([*initdb, "-E", "UTF8", "--no-sync", "--no-instructions"]),
            check=True,
            capture_output=True,
        )

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        pg_ctl = [_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options]
        subprocess.run(
            _as_postgres([*pg_ctl, "-w", "-t", "60", "start"]),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [_pg_bin("psql"), "-XqtA", "-v", "ON_ERROR_STOP=1", self.dsn(database), "-c", sql],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()


class PrivateRedis:
    """redis-server without persistence: a restart loses every key, the worst case."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.log = root / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found: install Redis")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--logfile", str(self.log)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            )
            if done.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None


class SmallDisk:
    """A small tmpfs (root may mount); filled with a ballast file and emptied on demand."""

    def __init__(self, root: Path, megabytes: int) -> None:
        self.path = root / "small"
        self.path.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
        )
        self.ballast = self.path / "ballast"

    def fill(self) -> None:
        """Take every free byte: a write that needs one more block now fails with ENOSPC."""
        fd = os.open(self.ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, bytes(size))
        finally:
            os.close(fd)

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


@dataclass
class Member:
    """One taskgate process of the fleet, restartable."""

    name: str
    args: list[str]
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0


@dataclass
class Fleet:
    """2 API processes (``serve --no-worker``), N workers and a scheduler on one database."""

    database_url: str
    data_dir: Path
    logs: Path
    workers: int = 2
    concurrency: int = 3
    redis_url: str | None = None
    members: dict[str, Member] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = taskgate_env(self.database_url, self.data_dir)
        env["TASKGATE_WORKER__LEASE_SECONDS"] = "5"
        env["TASKGATE_WORKER__POLL_SECONDS"] = "0.5"
        env["TASKGATE_LOG_LEVEL"] = "WARNING"
        env["TASKGATE_SCHEDULER__MIN_INTERVAL_SECONDS"] = "1"
        if self.redis_url:
            env["TASKGATE_REDIS_URL"] = self.redis_url
            # A budget the load spends a visible part of, so shared counting can be seen.
            env["TASKGATE_RATE_LIMIT__STANDARD"] = "100000/minute"
        return env

    def migrate(self) -> None:
        command = [sys.executable, "-m", "taskgate.cli", "migrate"]
        subprocess.run(command, env=self.env(), cwd=ROOT, check=True, capture_output=True)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for n in range(2):
            port = free_port()
            args = ["serve", "--no-worker", "--port", str(port)]
            self.members[f"api-{n}"] = Member(f"api-{n}", args, port)
        for n in range(self.workers):
            args = ["worker", "--concurrency", str(self.concurrency), "--grace", "5"]
            self.members[f"worker-{n}"] = Member(f"worker-{n}", args)
        self.members["scheduler"] = Member("scheduler", ["scheduler"])
        # One API first: it creates the first administrator, which two at once would race for.
        self.launch("api-0")
        self.wait_ready("api-0")
        for name in self.members:
            if name != "api-0":
                self.launch(name)
        self.wait_ready("api-1")

    @property
    def api_bases(self) -> list[str]:
        return [f"http://127.0.0.1:{m.port}" for m in self.members.values() if m.port]

    def launch(self, name: str) -> None:
        member = self.members[name]
        out = (self.logs / f"{name}.log").open("ab")
        member.process = subprocess.Popen(
            [sys.executable, "-m", "taskgate.cli", *member.args],
            env=self.env(),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def kill(self, name: str) -> None:
        """kill -9 the process and everything it started (its sandboxes too)."""
        member = self.members[name]
        if member.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(member.process.pid, signal.SIGKILL)
        member.process.wait()
        member.process = None

    def restart(self, name: str) -> None:
        self.kill(name)
        self.launch(name)
        self.members[name].restarts += 1

    def wait_ready(self, name: str, timeout: float = 60) -> float:
        """Seconds until the API process answers /readiness with 200."""
        member = self.members[name]
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if member.process is None or member.process.poll() is not None:
                log = (self.logs / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"{name} exited during start-up:\n{log}")
            try:
                answer = httpx.get(f"http://127.0.0.1:{member.port}/readiness", timeout=2)
                if answer.status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout} s")

    def exited(self) -> list[str]:
        """Members that died on their own (not killed by us)."""
        return [
            name
            for name, m in self.members.items()
            if m.process is not None and m.process.poll() is not None
        ]

    def stop(self) -> None:
        for member in self.members.values():
            if member.process is not None and member.process.poll() is None:
                member.process.send_signal(signal.SIGTERM)
        for name, member in self.members.items():
            if member.process is None:
                continue
            try:
                member.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(name)
