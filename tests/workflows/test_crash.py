"""A worker killed mid-execution: a replacement finishes the execution, and the steps that
had completed are not run again (the loopback server counts every request)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from taskgate.models import Event
from taskgate.settings import Settings
from tests.conftest import TEST_SECRET
from tests.support.waiting import eventually
from tests.workflows.support import (
    LoopbackServer,
    create_workflow,
    engine_app,
    run,
    steps_by_key,
    wait_execution,
)

SRC = Path(__file__).resolve().parents[2] / "src"
LEASE_SECONDS = 2


@contextmanager
def worker_process(settings: Settings, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``taskgate worker`` in its own process, on the test's database."""
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "TASKGATE_DATABASE__URL": settings.database_url,
        "TASKGATE_AUTH__JWT_SECRET": TEST_SECRET,
        "TASKGATE_DATA_DIR": str(data_dir),
        "TASKGATE_WORKER__LEASE_SECONDS": str(LEASE_SECONDS),
        "TASKGATE_WORKER__POLL_SECONDS": "0.2",
        "TASKGATE_OUTBOUND__ALLOW_LOOPBACK": "true",
        "TASKGATE_LOG_LEVEL": "WARNING",
        "TASKGATE_ENVIRONMENT": "test",
    }
    command = [
        sys.executable,
        "-c",
        "from taskgate.cli import app; app()",
        "worker",
        "--concurrency",
        "4",
        "--grace",
        "0",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def test_a_killed_worker_is_replaced_without_repeating_finished_steps(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory()
    if settings.is_sqlite:
        pytest.skip("the crash test runs worker processes against PostgreSQL")
    with LoopbackServer() as server:
        async with engine_app(settings_factory, with_worker=False) as env:
            client, alice = env.client, env.alice

            def call(name: str, path: str) -> dict[str, object]:
                return {
                    "id": name,
                    "type": "http.request",
                    "config": {
                        "url": f"{server.url}/{path}/{name}",
                        "method": "POST",
                        "json": {"execution": "{{ execution.id }}"},
                        "timeout_seconds": 60,
                    },
                }

            graph = {
                "nodes": [call("s1", "hit"), call("s2", "slow"), call("s3", "hit")],
                "edges": [{"from": "s1", "to": "s2"}, {"from": "s2", "to": "s3"}],
            }
            workflow_id = await create_workflow(client, alice, {"name": "crash", "graph": graph})
            execution_id = await run(client, alice, workflow_id)

            with worker_process(settings, tmp_path) as first:
                # s1 has finished and s2's request is in flight, held by the server.
                await eventually(lambda: server.hits["s2"] == 1, timeout=60)
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait, 10)
            assert first.returncode == -signal.SIGKILL

            midway = await wait_execution(client, alice, execution_id, ("RUNNING",))
            assert steps_by_key(midway)["s1"]["status"] == "SUCCESS"
            assert steps_by_key(midway)["s2"]["status"] == "RUNNING"
            assert "s3" not in steps_by_key(midway)

            with worker_process(settings, tmp_path):
                detail = await wait_execution(client, alice, execution_id, timeout=90)
            server.release.set()

            assert detail["status"] == "SUCCESS", detail
            steps = steps_by_key(detail)
            # The step in flight ran again (at least once); the finished ones did not.
            assert server.hits == {"s1": 1, "s2": 2, "s3": 1}
            assert [steps[k]["attempt"] for k in ("s1", "s2", "s3")] == [1, 2, 1]
            assert steps["s2"]["output_data"]["body"]["count"] == 2
            async with env.db.transaction(write=False) as session:
                started = (
                    await session.scalars(
                        select(Event.payload).where(
                            Event.execution_id == uuid.UUID(execution_id),
                            Event.type == "step.started",
                        )
                    )
                ).all()
            assert sorted(p["node_key"] for p in started) == ["s1", "s2", "s2", "s3"]
