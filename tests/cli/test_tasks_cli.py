"""``taskgate tasks``: the command line against a real server with a worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from taskgate.app import create_app
from taskgate.jobs import Worker
from taskgate.settings import Settings
from tests.support.clients import User
from tests.tasks.live_server import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]


async def cli(url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    env |= {
        "PYTHONPATH": str(ROOT / "src"),
        "TASKGATE_URL": url,
        "TASKGATE_API_KEY": key,
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "taskgate.cli", "tasks", *args]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=120
    )


async def test_submit_follow_list_get_cancel(
    client: httpx.AsyncClient,
    alice: User,
    settings_factory: Callable[..., Settings],
    sandbox_dir: Path,
) -> None:
    response = await client.post("/api/v1/api-keys", json={"name": "cli"}, headers=alice.headers)
    key = response.json()["key"]
    settings = settings_factory().model_copy(update={"data_dir": sandbox_dir})
    script = sandbox_dir / "hello.py"
    script.write_text("print('hello from python')\n")
    with serve_in_thread(create_app(settings, [Worker(concurrency=2)])) as url:
        followed = await cli(url, key, "submit", "-c", "echo one", "-c", "echo two", "--follow")
        assert followed.returncode == 0, followed.stderr
        assert "one" in followed.stdout
        assert "two" in followed.stdout
        assert "COMPLETED" in followed.stdout

        failing = await cli(url, key, "submit", "-c", "exit 4", "--follow")
        assert failing.returncode == 1
        assert "exit code 4" in failing.stdout

        scripted = await cli(url, key, "submit", "--script", str(script), "--follow")
        assert scripted.returncode == 0, scripted.stderr
        assert "hello from python" in scripted.stdout

        queued = await cli(url, key, "submit", "-c", "sleep 30", "--label", "slow")
        task_id = queued.stdout.strip()
        listed = await cli(url, key, "list", "--label", "slow", "--json")
        assert [t["task_id"] for t in json.loads(listed.stdout)] == [task_id]
        cancelled = await cli(url, key, "cancel", task_id, "--reason", "done testing")
        assert cancelled.returncode == 0, cancelled.stderr
        shown = await cli(url, key, "get", task_id)
        assert json.loads(shown.stdout)["task_id"] == task_id

        invalid = await cli(url, key, "submit")
        assert invalid.returncode == 1
        assert "query" in invalid.stderr
        assert "commands" in invalid.stderr
        denied = await cli(url, "tg_wrong", "list")
        assert denied.returncode == 1
        assert "401" in denied.stderr
