"""Fault tests at production scale: 2 API processes (``serve --no-worker``), 2 workers and a
scheduler on PostgreSQL, under a steady load of command tasks and workflow runs, while
processes are killed, PostgreSQL and Redis restart, and the disk fills. Prints one row per
scenario: what was accepted (a 2xx), what ended in a final state, what was lost or duplicated,
and the longest time no submission was accepted.

``python -m bench chaos`` or ``python -m bench.chaos [kill] [postgres] [redis] [disk]``.
Runs its own PostgreSQL cluster and Redis server on free ports (never the machine's shared
ones); the disk scenario mounts a small tmpfs and needs root. Not part of ``python -m bench``
without a name: it takes several minutes and kills processes.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._chaos_infra import Fleet, PrivatePostgres, PrivateRedis, SmallDisk
from bench._chaos_load import WORKFLOW, Load, LoadStats, Verdict, judge, settle
from bench._task_server import api_key

EXPLICIT_ONLY = True  # python -m bench runs it only when named
KILLS = int(os.environ.get("BENCH_CHAOS_KILLS", "100"))
KILL_INTERVAL = float(os.environ.get("BENCH_CHAOS_KILL_INTERVAL", "2.0"))
TASKS_PER_SECOND = float(os.environ.get("BENCH_CHAOS_TASKS_PER_SECOND", "2"))
RUNS_PER_SECOND = float(os.environ.get("BENCH_CHAOS_RUNS_PER_SECOND", "0.5"))
OUTAGE_SECONDS = float(os.environ.get("BENCH_CHAOS_OUTAGE_SECONDS", "10"))
SETTLE_SECONDS = 240.0
SCENARIOS = ("kill", "postgres", "redis", "disk")


@dataclass
class Outcome:
    name: str
    verdict: Verdict
    stats: LoadStats
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        v = self.verdict
        return v.lost == 0 and v.duplicated == 0 and v.stuck == 0 and not v.refused


@dataclass
class Stage:
    """What one scenario runs on: the fleet, its database, and the private services."""

    name: str
    postgres: PrivatePostgres
    redis: PrivateRedis | None
    fleet: Fleet
    dsn: str
    key: str = ""
    workflow_id: str = ""
    schedule_id: str = ""


Chaos = Callable[[Stage, Load, list[str]], Awaitable[None]]


async def _readiness(bases: list[str], since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` until every API process answers /readiness with 200."""
    async with httpx.AsyncClient(timeout=2) as client:
        waiting = set(bases)
        while waiting and time.monotonic() - since < timeout:
            for base in list(waiting):
                try:
                    if (await client.get(base + "/readiness")).status_code == 200:
                        waiting.discard(base)
                except httpx.TransportError:
                    pass
            await asyncio.sleep(0.05)
    return time.monotonic() - since


async def _first_accepted_after(stats: LoadStats, since: float, timeout: float = 60) -> float:
    while time.monotonic() - since < timeout:
        if stats.last_success is not None and stats.last_success > since:
            return stats.last_success - since
        await asyncio.sleep(0.05)
    return float("inf")


async def kill_processes(stage: Stage, load: Load, notes: list[str]) -> None:
    """kill -9 a random worker or API process every KILL_INTERVAL seconds, restarting it."""
    fleet = stage.fleet
    victims = [n for n in fleet.members if n.startswith(("worker", "api"))]
    api_recovery: list[float] = []
    waits: set[asyncio.Task[None]] = set()

    async def ready(name: str, since: float) -> None:
        try:
            await asyncio.to_thread(fleet.wait_ready, name)
            api_recovery.append(time.monotonic() - since)
        except RuntimeError:
            pass  # killed again before it was up

    await asyncio.sleep(5)
    counts = {"worker": 0, "api": 0}
    for _ in range(KILLS):
        name = random.choice(victims)
        if name.startswith("api") and waits:
            # Two replicas behind a balancer: kill one while the other still restarts and
            # the figure is the start-up time of a process on this machine, not failover.
            name = random.choice([v for v in victims if v.startswith("worker")])
        since = time.monotonic()
        await asyncio.to_thread(fleet.restart, name)
        counts[name.split("-")[0]] += 1
        if name.startswith("api"):
            task = asyncio.create_task(ready(name, since))
            waits.add(task)
            task.add_done_callback(waits.discard)
        await asyncio.sleep(KILL_INTERVAL)
    await asyncio.gather(*waits)
    notes.append(
        f"{counts['worker']} worker + {counts['api']} API kill -9 (an API only while the other "
        "is up)"
    )
    if api_recovery:
        notes.append(
            f"API back in {statistics.median(api_recovery):.1f} s median, "
            f"{max(api_recovery):.1f} s max"
        )


async def restart_postgres(stage: Stage, load: Load, notes: list[str]) -> None:
    await asyncio.sleep(10)
    await asyncio.to_thread(stage.postgres.stop)
    await asyncio.sleep(OUTAGE_SECONDS)
    await asyncio.to_thread(stage.postgres.start)
    up = time.monotonic()
    ready = await _readiness(stage.fleet.api_bases, up)
    accepted = await _first_accepted_after(load.stats, up)
    notes.append(f"PG down {OUTAGE_SECONDS:.0f} s; APIs ready {ready:.1f} s after it was back")
    notes.append(f"first accepted {accepted:.1f} s after")
    if max(ready, accepted) > 5:
        notes.append("RECOVERY OVER 5 s")
    await asyncio.sleep(15)


async def _rate_limit_remaining(stage: Stage) -> list[int]:
    """X-RateLimit-Remaining of one read on each API process, in turn."""
    remaining = []
    async with httpx.AsyncClient(timeout=5) as client:
        for base in stage.fleet.api_bases:
            answer = await client.get(
                base + "/api/v1/tasks?limit=1", headers={"X-API-Key": stage.key}
            )
            remaining.append(int(answer.headers.get("x-ratelimit-remaining", "-1")))
    return remaining


async def _fanout_latency(stage: Stage, timeout: float = 30) -> float:
    """Submit a task on one API and follow it on the other: seconds until its final event."""
    first, second = stage.fleet.api_bases[:2]
    headers = {"X-API-Key": stage.key}
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=timeout) as client:
        created = await client.post(
            first + "/api/v1/tasks", json={"commands": ["true"]}, headers=headers
        )
        created.raise_for_status()
        task_id = created.json()["task_id"]
        url = f"{second}/api/v1/tasks/{task_id}/stream"
        async with client.stream("GET", url, headers=headers) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("event: task.") and line.split(".", 1)[1] in (
                    "completed",
                    "failed",
                ):
                    return time.monotonic() - started
                if time.monotonic() - started > timeout:
                    break
    return float("inf")


async def restart_redis(stage: Stage, load: Load, notes: list[str]) -> None:
    assert stage.redis is not None
    await asyncio.sleep(8)
    before = await _fanout_latency(stage)
    shared_before = await _rate_limit_remaining(stage)
    await asyncio.to_thread(stage.redis.stop)
    await asyncio.sleep(2)
    during = await _fanout_latency(stage)
    shared_during = await _rate_limit_remaining(stage)
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - 2 - during))
    await asyncio.to_thread(stage.redis.start)
    await asyncio.sleep(3)
    after = await _fanout_latency(stage)
    shared_after = await _rate_limit_remaining(stage)
    notes.append(
        f"fan-out {before:.1f} s before, {during:.1f} s during (polling), {after:.1f} s after"
    )

    def shared(values: list[int]) -> str:
        return "shared" if values[1] < values[0] else "fail-open"

    notes.append(
        f"rate limits {shared(shared_before)} / {shared(shared_during)} during / "
        f"{shared(shared_after)} after"
    )
    await asyncio.sleep(10)


async def fill_disk(stage: Stage, load: Load, notes: list[str], disk: SmallDisk) -> None:
    await asyncio.sleep(10)
    before = dict(load.stats.statuses)
    await asyncio.to_thread(disk.fill)
    await asyncio.sleep(OUTAGE_SECONDS)
    during = {k: v - before.get(k, 0) for k, v in load.stats.statuses.items()}
    await asyncio.to_thread(disk.free)
    freed = time.monotonic()
    accepted = await _first_accepted_after(load.stats, freed)
    refusals = ", ".join(f"{n} x{k}" for k, n in sorted(during.items()) if k != "201" and n)
    notes.append(f"while full: {refusals or 'no refusals'}")
    notes.append(f"first accepted {accepted:.1f} s after space returned")
    await asyncio.sleep(15)


async def _prepare(stage: Stage) -> None:
    base = stage.fleet.api_bases[0]
    stage.key = await asyncio.to_thread(api_key, base)
    headers = {"X-API-Key": stage.key}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
        created = await client.post("/api/v1/workflows", json=WORKFLOW)
        created.raise_for_status()
        stage.workflow_id = created.json()["id"]
        schedule = {"name": "chaos", "interval_seconds": 5, "task": {"commands": ["true"]}}
        created = await client.post("/api/v1/schedules", json=schedule)
        created.raise_for_status()
        stage.schedule_id = created.json()["id"]


async def _run(stage: Stage, chaos: Chaos) -> Outcome:
    await _prepare(stage)
    load = Load(
        stage.fleet.api_bases, stage.key, stage.workflow_id, TASKS_PER_SECOND, RUNS_PER_SECOND
    )
    stop = asyncio.Event()
    running = asyncio.create_task(load.run(stop))
    notes: list[str] = []
    try:
        await chaos(stage, load, notes)
    finally:
        stop.set()
        await running
    # The schedule keeps firing: stop it so that "everything final" can become true.
    async with httpx.AsyncClient(timeout=10, headers={"X-API-Key": stage.key}) as client:
        base = stage.fleet.api_bases[0]
        paused = await client.post(f"{base}/api/v1/schedules/{stage.schedule_id}/pause")
        paused.raise_for_status()
    state = await settle(stage.dsn, SETTLE_SECONDS)
    died = stage.fleet.exited()
    if died:
        notes.append(f"exited on their own: {', '.join(died)}")
    verdict = judge(load.submissions, state)
    notes.append(f"slowest task {verdict.slowest:.1f} s from submission to final state")
    if verdict.failed:
        notes.append(f"{verdict.failed} ended FAILED")
    return Outcome(stage.name, verdict, load.stats, notes)


def _stage(
    name: str,
    root: Path,
    postgres: PrivatePostgres,
    redis: PrivateRedis | None,
    tablespace: str = "",
) -> Stage:
    database = f"chaos_{name}"
    postgres.psql(
        f"CREATE DATABASE {database}" + (f" TABLESPACE {tablespace}" if tablespace else "")
    )
    data_dir = root / name / "data"
    logs = root / name / "logs"
    logs.mkdir(parents=True)
    url = postgres.dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)
    fleet = Fleet(url, data_dir, logs, redis_url=redis.url if redis else None)
    return Stage(name, postgres, redis, fleet, postgres.dsn(database))


def run_scenario(name: str, root: Path, postgres: PrivatePostgres, redis: PrivateRedis) -> Outcome:
    disk: SmallDisk | None = None
    if name == "disk":
        disk = SmallDisk(root, megabytes=48)
        space = disk.path / "pg"
        space.mkdir()
        shutil.chown(space, "postgres", "postgres")
        postgres.psql(f"CREATE TABLESPACE small LOCATION '{space}'")
        stage = _stage(name, root, postgres, None, tablespace="small")
        stage.fleet.data_dir = disk.path / "data"
    else:
        stage = _stage(name, root, postgres, redis if name == "redis" else None)
    chaos: Chaos = {
        "kill": kill_processes,
        "postgres": restart_postgres,
        "redis": restart_redis,
    }.get(name) or (lambda s, load, notes: fill_disk(s, load, notes, disk))  # type: ignore[arg-type]
    stage.fleet.migrate()
    stage.fleet.start()
    try:
        return asyncio.run(_run(stage, chaos))
    finally:
        stage.fleet.stop()
        if disk is not None:
            disk.free()
            postgres.psql(f"DROP DATABASE IF EXISTS chaos_{name} WITH (FORCE)")
            postgres.psql("DROP TABLESPACE IF EXISTS small")
            disk.unmount()


def _seconds(value: float) -> str:
    return "-" if value == 0 else f"{value:.1f} s"


def table(outcomes: list[Outcome]) -> str:
    head = ("scenario", "accepted", "completed", "lost", "duplicated", "max unavailability")
    rows = [
        (
            o.name,
            str(o.verdict.accepted),
            str(o.verdict.completed),
            str(o.verdict.lost),
            str(o.verdict.duplicated),
            _seconds(o.stats.max_gap),
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for o in outcomes:
        v, s = o.verdict, o.stats
        statuses = ", ".join(f"{k} x{n}" for k, n in sorted(s.statuses.items()))
        lines.append(f"\n{o.name}: {'; '.join(o.notes)}")
        lines.append(f"  answers: {statuses}; slowest answer {s.slowest_answer:.1f} s")
        extra = [
            f"stuck (not accepted, never final): {v.stuck}" if v.stuck else "",
            f"given up by the client: {v.not_taken} ({v.unanswered} of them stored and run "
            "once, their answer lost with the API process)"
            if v.not_taken
            else "",
            f"503 without Retry-After: {s.missing_retry_after}" if s.missing_retry_after else "",
            f"unclear 5xx: {s.unclear_errors}" if s.unclear_errors else "",
            f"refused: {v.refused}" if v.refused else "",
        ]
        if any(extra):
            lines.append("  " + "; ".join(e for e in extra if e))
    return "\n".join(lines)


def main(names: list[str] | None = None) -> None:
    chosen = names or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s) {sorted(unknown)}; have {', '.join(SCENARIOS)}")
    if "disk" in chosen and os.geteuid() != 0:
        print("disk: skipped (mounting a small tmpfs needs root)", flush=True)
        chosen.remove("disk")
    outcomes: list[Outcome] = []
    broken: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="taskgate-chaos-"))
    root.chmod(0o755)  # the postgres account reaches its cluster below
    postgres = PrivatePostgres(root)
    redis = PrivateRedis(root)
    postgres.start()
    redis.start()
    try:
        for name in chosen:
            print(f"-- {name} ...", flush=True)
            started = time.monotonic()
            try:
                outcomes.append(run_scenario(name, root, postgres, redis))
            except Exception:
                traceback.print_exc()
                broken.append(name)
            print(f"   done in {time.monotonic() - started:.0f} s", flush=True)
    finally:
        redis.stop()
        postgres.stop()
        if os.environ.get("BENCH_CHAOS_KEEP"):
            print(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(table(outcomes), flush=True)
    if broken:
        print(f"scenarios that could not run to the end: {', '.join(broken)}", flush=True)
    if broken or not all(o.clean for o in outcomes):
        raise SystemExit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
