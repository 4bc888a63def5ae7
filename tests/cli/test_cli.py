"""The ``taskgate`` command as a user runs it: a real process on an embedded database."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from taskgate import __version__

SRC = Path(__file__).resolve().parent.parent / "src"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    return {**clean, "PYTHONPATH": str(SRC), "TASKGATE_DATA_DIR": str(tmp_path / "data")}


def taskgate(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "taskgate.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(
    env: dict[str, str], log: Path, *, port_from_env: bool = False
) -> Iterator[tuple[str, Path]]:
    """``taskgate serve`` on a free port, until /health answers; stopped like Ctrl-C.

    The port is given with ``--port``, or with ``TASKGATE_HTTP__PORT`` (``port_from_env``)."""
    port = free_port()
    options = [] if port_from_env else ["--port", str(port)]
    if port_from_env:
        env = {**env, "TASKGATE_HTTP__HOST": "127.0.0.1", "TASKGATE_HTTP__PORT": str(port)}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "taskgate.cli", "serve", *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not come up:\n" + log.read_text()
            time.sleep(0.2)
        yield base, log
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_version(env: dict[str, str]) -> None:
    assert taskgate(env, "version").stdout.strip() == __version__


def test_migrate_then_users_and_keys(env: dict[str, str]) -> None:
    first = taskgate(env, "migrate").stdout
    assert "Database is current" not in first
    assert re.search(r"Created the database schema: applied \d+ migrations", first), first
    assert "Database is current" in taskgate(env, "migrate").stdout  # idempotent
    created = taskgate(env, "users", "create", "root", "--admin", "--password", "root-password")
    assert "Created user root" in created.stdout
    key = taskgate(env, "api-keys", "create", "--user", "root").stdout.strip()
    assert re.fullmatch(r"tg_[0-9a-f]{12}_[A-Za-z0-9_\-]{40,}", key), key

    duplicate = taskgate(
        env, "users", "create", "root", "--password", "other-password", check=False
    )
    assert duplicate.returncode == 1
    assert "taken" in duplicate.stdout + duplicate.stderr
    unknown = taskgate(env, "api-keys", "create", "--user", "nobody", check=False)
    assert unknown.returncode != 0
    assert "nobody" in unknown.stdout + unknown.stderr


def test_the_readme_walk_through(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "TASKGATE_ADMIN_PASSWORD": "walk-through-password"}
    with serving(env, tmp_path / "serve.log") as (base, _), httpx.Client(base_url=base) as api:
        login = api.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": "walk-through-password"},
        )
        assert login.status_code == 200, login.text
        assert login.json()["token_type"] == "Bearer"
        created = api.post(
            "/api/v1/api-keys",
            json={"name": "laptop"},
            headers={"Authorization": f"Bearer {login.json()['access']}"},
        )
        assert created.status_code == 201, created.text
        me = api.get("/api/v1/users/me", headers={"X-API-Key": created.json()["key"]})
        assert me.status_code == 200
        assert me.json()["user"]["username"] == "admin"
        assert me.json()["auth"] == "api_key"
        projects = api.get("/api/v1/projects", headers={"X-API-Key": created.json()["key"]})
        (default,) = [p for p in projects.json()["results"] if p["is_default"]]
        assert (default["slug"], default["id"]) == (
            "default-admin",
            me.json()["default_project_id"],
        )
        assert api.get("/readiness").json()["status"] == "ready"
        assert api.get("/docs").status_code == 200


def test_generated_admin_credentials_are_printed_once(env: dict[str, str], tmp_path: Path) -> None:
    with serving(env, tmp_path / "first.log") as (base, log):
        output = log.read_text()
        assert "first administrator created" in output
        assert "taskgate users set-password admin" in output
        match = re.search(r"password: (\S+)", output)
        assert match, output
        login = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": "admin", "password": match.group(1)},
        )
        assert login.status_code == 200, login.text
    with serving(env, tmp_path / "second.log") as (_, log):
        output = log.read_text()
        assert "first administrator" not in output
        assert match.group(1) not in output


def test_set_password_changes_what_logs_in(env: dict[str, str], tmp_path: Path) -> None:
    taskgate(env, "migrate")
    taskgate(env, "users", "create", "ops", "--password", "first-password")
    changed = taskgate(env, "users", "set-password", "ops", "--password", "second-password")
    assert "Password of ops changed" in changed.stdout
    unknown = taskgate(env, "users", "set-password", "nobody", "--password", "x" * 12, check=False)
    assert unknown.returncode == 1
    assert "nobody" in unknown.stdout
    with serving(env, tmp_path / "serve.log") as (base, _), httpx.Client(base_url=base) as api:
        old = api.post("/api/v1/auth/login", json={"username": "ops", "password": "first-password"})
        assert old.status_code == 401
        new = api.post(
            "/api/v1/auth/login", json={"username": "ops", "password": "second-password"}
        )
        assert new.status_code == 200, new.text


def test_serve_takes_host_and_port_from_settings(env: dict[str, str], tmp_path: Path) -> None:
    with serving(env, tmp_path / "serve.log", port_from_env=True) as (base, log):
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        assert f"on {base}" in log.read_text()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_serve_keeps_the_data_directory_private(env: dict[str, str], tmp_path: Path) -> None:
    data = Path(env["TASKGATE_DATA_DIR"])
    with serving(env, tmp_path / "serve.log") as (base, _):
        # A write, so that the WAL and its index exist while the server runs.
        assert httpx.get(f"{base}/readiness").status_code == 200
        assert _mode(data) == 0o700
        for name in ("taskgate.db", "taskgate.db-wal", "taskgate.db-shm", "secret.key"):
            assert _mode(data / name) == 0o600, name
        opened = [p for p in data.rglob("*") if p.is_file() and _mode(p) & 0o077]
        assert opened == []


def test_serve_closes_files_an_older_version_left_open(env: dict[str, str], tmp_path: Path) -> None:
    data = Path(env["TASKGATE_DATA_DIR"])
    old_umask = os.umask(0o022)
    try:
        data.mkdir()
        (data / "secret.key").write_text("an-older-secret-" + "x" * 40)
        (data / "taskgate.db").touch()  # an empty file is an empty SQLite database
    finally:
        os.umask(old_umask)
    assert _mode(data / "secret.key") == 0o644
    with serving(env, tmp_path / "serve.log"):
        assert _mode(data / "secret.key") == 0o600
        assert _mode(data / "taskgate.db") == 0o600
