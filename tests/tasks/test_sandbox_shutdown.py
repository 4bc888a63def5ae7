"""`taskgate serve` stopping while a sandboxed task runs: nothing of the sandbox is left."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.runtime.sandbox_support import needs_bwrap, needs_root

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-long-admin-password"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _until(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@needs_bwrap
@needs_root
def test_no_sandbox_process_outlives_serve(sandbox_dir: Path) -> None:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")},
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT / "src")),
        "TASKGATE_DATA_DIR": str(sandbox_dir),
        "TASKGATE_ADMIN_PASSWORD": PASSWORD,
        "TASKGATE_LOG_LEVEL": "WARNING",
    }
    serve = subprocess.Popen(
        [sys.executable, "-m", "taskgate.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:

            def up() -> bool:
                try:
                    return client.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            _until(up, 60)
            login = {"username": "admin", "password": PASSWORD}
            token = client.post("/api/v1/auth/login", json=login).json()["access"]
            headers = {"Authorization": f"Bearer {token}"}
            body = {"commands": ["sleep 300 & sleep 300"]}
            assert client.post("/api/v1/tasks", json=body, headers=headers).status_code == 201
            sandboxed: set[int] = set()

            def sandbox_started() -> bool:
                sandboxed.update(_descendants(serve.pid))
                return "sleep" in {_name(pid) for pid in sandboxed}

            _until(sandbox_started, 60)
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    # Not even a zombie left for the host's init to reap: the worker killed and reaped them.
    left = {pid for pid in sandboxed if Path(f"/proc/{pid}").exists()}
    assert left == set()
