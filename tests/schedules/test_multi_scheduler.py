"""Schedulers on the real clock: embedded in the app, and two `taskgate scheduler` processes
sharing one PostgreSQL database without ever firing an occurrence twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.identity.user_service import ensure_first_admin
from taskgate.models import ScheduleRun, Task
from taskgate.schedules.scheduler import SchedulerComponent
from taskgate.schedules.schemas import ScheduleCreate
from taskgate.schedules.service import create_schedule
from taskgate.settings import Settings
from tests.conftest import TEST_SECRET, AppFactory
from tests.schedules.flows import create, runs
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login
from tests.support.waiting import eventually

SRC = Path(__file__).resolve().parents[2] / "src"


async def _user(client: httpx.AsyncClient, db: Database) -> User:
    async with db.transaction() as session:
        await ensure_first_admin(session, ADMIN_PASSWORD)
    admin = await login(client, "admin", ADMIN_PASSWORD)
    return await create_user(client, admin, "dana")


async def test_embedded_scheduler_fires_on_the_real_clock(
    app_factory: AppFactory, settings_factory: Callable[..., Settings]
) -> None:
    overrides = {"scheduler": {"min_interval_seconds": 1, "tick_seconds": 0.2}}
    settings = settings_factory(**overrides)
    component = SchedulerComponent(settings)
    async with app_factory(**overrides, components=[component]) as (app, client):
        user = await _user(client, app.state.db)
        # Far enough ahead that a slow machine still saves the schedule before it is due.
        start = (utcnow() + timedelta(seconds=3)).replace(microsecond=0)
        created = await create(
            client, user, interval_seconds=1, overlap="allow", start_at=start.isoformat()
        )

        async def fired_twice() -> list[dict[str, object]] | None:
            history = await runs(client, user, created["id"])
            return history if len([r for r in history if r["status"] == "fired"]) >= 2 else None

        history = await eventually(fired_twice, timeout=15, what="two firings")
        first = history[0]
        assert first["scheduled_for"] == start.isoformat().replace("+00:00", "Z")
        assert first["task_id"] is not None
        # Woken by its own clock, not a poll far behind: well under a second late.
        assert 0 <= int(str(first["delay_ms"])) < 1000


async def _collect(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while raw := await stream.readline():
        lines.append(raw.decode(errors="replace"))


async def _start_scheduler(database_url: str, data_dir: Path) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "TASKGATE_DATABASE__URL": database_url,
        "TASKGATE_AUTH__JWT_SECRET": TEST_SECRET,
        "TASKGATE_DATA_DIR": str(data_dir),
        "TASKGATE_LOG_JSON": "true",
        "TASKGATE_LOG_LEVEL": "INFO",
        "TASKGATE_SCHEDULER__TICK_SECONDS": "0.2",
        # Small batches, so both processes get a share of every wave.
        "TASKGATE_SCHEDULER__BATCH_SIZE": "4",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskgate.cli",
        "scheduler",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _fired_by(lines: list[str]) -> int:
    total = 0
    for line in lines:
        if '"schedules_processed"' in line:
            total += int(json.loads(line)["fired"])
    return total


async def test_two_scheduler_processes_fire_each_occurrence_once(
    app_factory: AppFactory, settings: Settings, tmp_path: Path
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("several schedulers share the work on PostgreSQL only")
    async with app_factory(scheduler={"min_interval_seconds": 1}) as (app, client):
        db: Database = app.state.db
        user = await _user(client, db)
        processes = [await _start_scheduler(settings.database_url, tmp_path) for _ in range(2)]
        logs: list[list[str]] = [[], []]
        readers = [
            asyncio.create_task(_collect(p.stderr, out))  # type: ignore[arg-type]
            for p, out in zip(processes, logs, strict=True)
        ]
        try:
            # Both must be up before the first wave, or one would simply get it all.
            await eventually(
                lambda: all(any("scheduler_started" in ln for ln in out) for out in logs),
                timeout=30,
                what="both schedulers to start",
            )
            first_due = (utcnow() + timedelta(seconds=2)).replace(microsecond=0)
            me = await client.get("/api/v1/users/me", headers=user.headers)
            project_id = uuid.UUID(me.json()["default_project_id"])
            owner = Principal(user.id, user.username, False, project_id=project_id)
            body = ScheduleCreate(
                name="wave",
                interval_seconds=2,
                overlap="allow",
                start_at=first_due,
                task={"commands": ["true"]},
            )
            async with db.transaction() as session:
                ids = [
                    str(
                        (
                            await create_schedule(
                                session, owner, body, app.state.settings, utcnow()
                            )
                        ).id
                    )
                    for _ in range(40)
                ]
            assert utcnow() < first_due, "too slow to set up for the test's timing"
            stop_at = first_due + timedelta(seconds=7)
            await asyncio.sleep((stop_at - utcnow()).total_seconds())
        finally:
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes:
                await asyncio.wait_for(process.wait(), timeout=20)
            await asyncio.gather(*readers)
        assert [p.returncode for p in processes] == [0, 0], logs

        async with db.transaction(write=False) as session:
            history = list((await session.scalars(select(ScheduleRun))).all())
            tasks = list((await session.scalars(select(Task))).all())
        assert all(r.status == "fired" for r in history)
        per_schedule = Counter(str(r.schedule_id) for r in history)
        waves = max(per_schedule.values())
        assert waves >= 3
        for schedule_id in ids:
            fired_at = sorted(r.scheduled_for for r in history if str(r.schedule_id) == schedule_id)
            # Every occurrence on the grid, in order, each exactly once, none missing.
            expected = [first_due + timedelta(seconds=2 * k) for k in range(len(fired_at))]
            assert fired_at == [e.astimezone(UTC) for e in expected]
            assert len(fired_at) >= waves - 1
        # Exactly one task per fired occurrence, no more.
        labels = Counter(label for t in tasks for label in t.labels)
        assert sorted(labels[f"schedule:{sid}"] for sid in ids) == sorted(
            per_schedule[sid] for sid in ids
        )
        assert len(tasks) == len(history)
        assert {str(r.task_id) for r in history} == {str(t.id) for t in tasks}
        # The work was shared, and the two processes' counts add up to what happened.
        shares = [_fired_by(out) for out in logs]
        assert all(share > 0 for share in shares), shares
        assert sum(shares) == len(history)
