"""The scheduler loop: claim due schedules, fire them, sleep until the next one is due.

Several schedulers may run against one PostgreSQL database (``taskgate scheduler`` beside the
one embedded in ``serve``): due rows are claimed ``FOR UPDATE SKIP LOCKED``, so each is
handled by one of them, and the UNIQUE (schedule_id, scheduled_for) key on the history makes
a second firing of an occurrence impossible rather than unlikely. On SQLite the claim is the
database's write lock.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.session import Database
from taskgate.models import Schedule, User
from taskgate.schedules import firing
from taskgate.schedules import repository as repo
from taskgate.schedules.clock import SYSTEM_CLOCK, Clock
from taskgate.schedules.due import (
    DuePlan,
    apply_plan,
    plan_due,
    start_batch,
    start_targets,
)
from taskgate.schedules.firing import Tally
from taskgate.schedules.occurrences import SCHEDULES_CHANGED
from taskgate.settings import Settings

log = structlog.get_logger()
# A schedule whose processing failed unexpectedly is looked at again after this long, so a
# poisoned row cannot spin the loop; its occurrences are then handled by its catch-up policy.
_RETRY_AFTER_FAILURE = timedelta(seconds=5)


@dataclass(frozen=True)
class Due:
    """A claimed schedule and what decides whether it may fire."""

    schedule: Schedule
    owner: User | None
    in_flight: int
    project_active: bool


class Scheduler:
    def __init__(self, db: Database, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look for due schedules now (a schedule was created or changed in this process)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def tick(self, now: datetime | None = None) -> Tally:
        """Fire everything due at ``now``: batches of one transaction each, several at once on
        PostgreSQL (each claims different rows)."""
        now = now or self.clock.now()
        lanes = self.settings.scheduler.concurrency if self.db.dialect == "postgresql" else 1
        seen: set[uuid.UUID] = set()
        results = await asyncio.gather(
            *(self._drain(now, seen) for _ in range(lanes)), return_exceptions=True
        )
        total = Tally()
        for result in results:
            if isinstance(result, BaseException):
                raise result
            total.add(result)
        if total.fired or total.skipped or total.buffered:
            log.info(
                "schedules_processed",
                scheduler=self.name,
                fired=total.fired,
                skipped=total.skipped,
                buffered=total.buffered,
            )
        return total

    async def _drain(self, now: datetime, seen: set[uuid.UUID]) -> Tally:
        total = Tally()
        while True:
            try:
                claimed, tally = await self._batch(now, seen, guarded=False)
            except Exception as error:
                # Something in the batch failed (an occurrence already recorded, a task that
                # conflicts, a workflow that broke): all of it rolled back, so redo it one
                # schedule at a time. Targets refused by a check do not get here.
                log.warning("schedule_batch_retried_one_by_one", error=repr(error))
                claimed, tally = await self._batch(now, seen, guarded=True)
            total.add(tally)
            if claimed < self.settings.scheduler.batch_size:
                return total

    async def _batch(
        self, now: datetime, seen: set[uuid.UUID], *, guarded: bool
    ) -> tuple[int, Tally]:
        """One transaction: claim due schedules and handle them. The fast path takes no
        savepoints; the guarded one isolates each schedule so one failure spoils nothing."""
        async with self.db.transaction() as session:
            claimed = await repo.claim_due(session, now, self.settings.scheduler.batch_size)
            # Handled schedules are never due again at the same ``now``; this only stops a
            # row that somehow is from spinning the loop.
            if not claimed or all(s.id in seen for s in claimed):
                return 0, Tally()
            in_flight = await firing.settle(session, claimed)
            owners = await repo.owners(session, {s.owner_id for s in claimed})
            disabled = await repo.disabled_projects(session, {s.project_id for s in claimed})
            due = [
                Due(s, owners.get(s.owner_id), in_flight[s.id], s.project_id not in disabled)
                for s in claimed
            ]
            if guarded:
                tally = Tally()
                for one in due:
                    tally.add(await self._guarded(session, one, now))
                await firing.announce(session)
            else:
                tally = await self._together(session, due, now)
        seen.update(s.id for s in claimed)
        return len(claimed), tally

    async def _together(self, session: AsyncSession, due: list[Due], now: datetime) -> Tally:
        """The whole batch at once: its tasks, then its history rows and their events, each
        kind in one INSERT per table; the schedules' new state goes out with the flush."""
        tally = Tally()
        batch = [(one.schedule, one.owner, self._plan(one, now)) for one in due]
        await start_batch(session, batch, self.settings, self.clock)
        history = firing.HistoryBatch()
        for s, _owner, plan in batch:
            tally.add(await apply_plan(session, s, plan, self.settings, now, into=history))
        await firing.announce(session)
        await history.write(session)
        return tally

    def _plan(self, due: Due, now: datetime) -> DuePlan:
        return plan_due(
            due.schedule,
            due.owner,
            due.in_flight,
            self.settings,
            now,
            project_active=due.project_active,
        )

    async def _guarded(self, session: AsyncSession, due: Due, now: datetime) -> Tally:
        """One schedule in a savepoint: whatever goes wrong stays with it."""
        s, owner = due.schedule, due.owner
        schedule_id = s.id
        try:
            async with session.begin_nested():
                plan = self._plan(due, now)
                await start_targets(session, s, owner, plan, self.settings, self.clock)
                return await apply_plan(session, s, plan, self.settings, now)
        except IntegrityError:
            # Another transaction recorded this occurrence first; ours rolled back whole.
            log.warning("schedule_occurrence_already_recorded", schedule_id=str(schedule_id))
        except Exception:
            log.exception("schedule_processing_failed", schedule_id=str(schedule_id))
        await session.refresh(s)
        s.due_at = now + _RETRY_AFTER_FAILURE
        return Tally()

    async def next_wait(self) -> float:
        """Seconds until the earliest due schedule, at most ``tick_seconds``."""
        async with self.db.transaction(write=False) as session:
            due = await repo.earliest_due(session)
        limit = self.settings.scheduler.tick_seconds
        if due is None:
            return limit
        return max(0.0, min(limit, (due - self.clock.now()).total_seconds()))

    async def run(self) -> None:
        log.info("scheduler_started", scheduler=self.name)
        limit = self.settings.scheduler.tick_seconds
        # After sleeping until the earliest due time, fire at once: asking the database
        # again would only delay every firing of that instant by a round trip.
        due = False
        while not self._stopping:
            self._wake.clear()
            try:
                wait = 0.0 if due else await self.next_wait()
                due = False
                if wait <= 0:
                    await self.tick()
                    continue
            except Exception:
                log.exception("scheduler_tick_failed", scheduler=self.name)
                wait = limit
            woken = await self._sleep(wait)
            due = not woken and wait < limit
        log.info("scheduler_stopped", scheduler=self.name)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less when woken; True when woken."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True


class SchedulerComponent:
    """The scheduler inside a ``serve`` process, sharing the app's database."""

    name = "scheduler"

    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.scheduler: Scheduler | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, app: FastAPI) -> None:
        db: Database = app.state.db
        self.scheduler = Scheduler(db, self.settings, self.clock)
        scheduler = self.scheduler

        async def changed(_items: list[Any]) -> None:
            scheduler.wake()

        db.listen(SCHEDULES_CHANGED, changed)
        self._task = asyncio.create_task(scheduler.run(), name="scheduler")

    async def stop(self) -> None:
        if self.scheduler is None or self._task is None:
            return
        self.scheduler.stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def run_standalone(settings: Settings) -> None:
    """``taskgate scheduler``: run until SIGINT or SIGTERM."""
    import signal

    from taskgate.db.engine import create_engine
    from taskgate.logs import configure_logging

    configure_logging(settings)
    from taskgate.events.bus import EventBus

    db = Database(create_engine(settings))
    # Announce this process's commits (schedule.fired, task.created) to API processes.
    bus = EventBus(settings, db)
    await bus.open(listen=False)
    scheduler = Scheduler(db, settings)
    # What exists now lives as long as the process: spare the collector from walking it again
    # in every full collection, which a batch of firings, making thousands of short-lived
    # objects, otherwise sets off.
    gc.freeze()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, scheduler.stop)
    try:
        await scheduler.run()
    finally:
        await bus.stop()
        await db.dispose()
