"""Command tasks when the sandbox, not the user's code, fails: refused without bubblewrap,
retried when bwrap fails to start, never the user's NONZERO_EXIT."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from taskgate.models import Task
from taskgate.settings import Settings
from tests.runtime.sandbox_support import needs_bwrap
from tests.support.clients import User
from tests.tasks.conftest import worker_app
from tests.tasks.flows import events, submit, types_of, wait_for_status
from tests.tasks.test_control import control

REAL_BWRAP = shutil.which("bwrap")


def _path_with(directory: Path) -> str:
    """PATH with ``directory`` first and no other bwrap on it."""
    kept = [d for d in os.environ["PATH"].split(":") if d and not Path(d, "bwrap").exists()]
    return ":".join([str(directory), *kept])


def _failing_bwrap(directory: Path, failures: int) -> None:
    """bwrap that fails to start its first ``failures`` sandboxes the way a host short of
    processes makes it fail, then is the real one."""
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)  # it runs as the sandbox's uid
    count = directory / "count"
    count.write_text("0")
    count.chmod(0o666)
    script = directory / "bwrap"
    script.write_text(
        f"""#!/bin/bash
if [ "$1" != --help ]; then
    n=$(( $(cat {count}) + 1 )); echo $n > {count}
    if [ $n -le {failures} ]; then
        echo "bwrap: Creating new namespace failed: Resource temporarily unavailable" >&2
        exit 1
    fi
fi
exec {REAL_BWRAP} "$@"
"""
    )
    script.chmod(0o755)


async def test_without_bubblewrap_a_command_task_is_refused_not_run(
    settings_factory: Callable[..., Settings],
    sandbox_dir: Path,
    alice: User,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path))
    async with worker_app(settings_factory, sandbox_dir) as (_, client):
        created = await submit(client, alice, commands=["touch /tmp/ran", "echo ran"])
        task = await wait_for_status(client, alice, created["task_id"])
    assert task["status"] == "FAILED"
    assert task["error_code"] == "SANDBOX_UNAVAILABLE"
    assert "apt-get install bubblewrap" in task["error"]
    assert task["attempts"] == 1
    assert not task["result"]


@needs_bwrap
async def test_bwrap_failing_to_start_is_retried(
    settings_factory: Callable[..., Settings],
    sandbox_dir: Path,
    alice: User,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # The first is the trial run at start; the second, the task's first attempt.
    _failing_bwrap(sandbox_dir / "bin", failures=2)
    monkeypatch.setenv("PATH", _path_with(sandbox_dir / "bin"))
    async with worker_app(settings_factory, sandbox_dir) as (_, client):
        created = await submit(client, alice, commands=["echo hello"])
        task = await wait_for_status(client, alice, created["task_id"])
        kinds = types_of(await events(client, alice, created["task_id"]))
    assert (task["status"], task["result"], task["attempts"]) == (
        "COMPLETED",
        "$ echo hello\nhello\n",
        2,
    )
    assert "task.retrying" in kinds


@needs_bwrap
async def test_bwrap_failing_again_and_again_is_a_sandbox_error(
    settings_factory: Callable[..., Settings],
    sandbox_dir: Path,
    alice: User,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _failing_bwrap(sandbox_dir / "bin", failures=1000)
    monkeypatch.setenv("PATH", _path_with(sandbox_dir / "bin"))
    overrides = {"worker": {"max_attempts": 2}}
    async with worker_app(settings_factory, sandbox_dir, **overrides) as (_, client):
        created = await submit(client, alice, commands=["echo hello"])
        task = await wait_for_status(client, alice, created["task_id"])
    assert (task["status"], task["error_code"], task["attempts"]) == ("FAILED", "SANDBOX_ERROR", 2)
    assert "Resource temporarily unavailable" in task["error"]


def test_serve_says_at_start_how_to_install_bubblewrap(sandbox_dir: Path, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")},
        "PATH": _path_with(tmp_path),
        "PYTHONPATH": os.environ.get("PYTHONPATH", str(root / "src")),
        "TASKGATE_DATA_DIR": str(sandbox_dir),
        "TASKGATE_ADMIN_PASSWORD": "a-long-admin-password",
        "COLUMNS": "200",
    }
    with socket.socket() as taken:  # serve starts, prints its banner, then cannot bind: exits
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = subprocess.run(
            [sys.executable, "-m", "taskgate.cli", "serve", "--port", port],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert "apt-get install bubblewrap" in done.stdout, done.stdout + done.stderr


@needs_bwrap
async def test_command_tasks_run_from_a_private_data_dir(
    settings_factory: Callable[..., Settings], alice: User
) -> None:
    private = Path(tempfile.mkdtemp(prefix="taskgate-private-"))  # 0700, as mktemp -d makes it
    try:
        async with worker_app(settings_factory, private) as (_, client):
            created = await submit(client, alice, commands=["echo hello > f", "cat f"])
            task = await wait_for_status(client, alice, created["task_id"])
    finally:
        shutil.rmtree(private, ignore_errors=True)
    assert (task["status"], task["result"]) == ("COMPLETED", "$ echo hello > f\n$ cat f\nhello\n")


async def test_input_the_sandbox_cannot_take_fails_the_task_not_the_worker(
    settings_factory: Callable[..., Settings],
    sandbox_dir: Path,
    app: FastAPI,
    client: httpx.AsyncClient,
    alice: User,
) -> None:
    db = app.state.db
    if db.dialect == "postgresql":
        pytest.skip("jsonb cannot hold a NUL: such a task can only be stored on SQLite")
    # Stored before submissions refused NUL characters: a command the kernel cannot take.
    created = await submit(client, alice, commands=["true"])
    task_id = created["task_id"]
    assert (await control(client, alice, task_id, "pause")).status_code == 202
    async with db.transaction() as session:
        await session.execute(
            update(Task)
            .where(Task.id == uuid.UUID(task_id))
            .values(input={"commands": ["echo a\u0000b"]})
        )
    assert (await control(client, alice, task_id, "resume")).status_code == 202
    async with worker_app(settings_factory, sandbox_dir) as (_, worker_client):
        task = await wait_for_status(worker_client, alice, task_id)
    assert (task["status"], task["error_code"], task["attempts"]) == ("FAILED", "SANDBOX_ERROR", 1)
    assert "NUL" in task["error"]
