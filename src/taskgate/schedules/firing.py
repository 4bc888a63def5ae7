"""One occurrence of a schedule: fired, skipped or buffered, always with its history row.

Everything here runs inside the caller's transaction: the history row, the task or
execution it starts, the event and the schedule's new state commit together or not at all,
and the UNIQUE (schedule_id, scheduled_for) key on the history row makes a second firing of
an occurrence fail the transaction, so it can never create a second task. A change to one
schedule writes through the ORM and ends with :func:`announce`, which flushes the events
written here and announces them after commit; the scheduler's batches write their new rows
with a :class:`HistoryBatch`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, insert, inspect
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.db.session import signal_after_commit
from taskgate.events.outbox import EVENTS_COMMITTED, announce_after_commit, event_values
from taskgate.ids import new_id
from taskgate.models import Event, Schedule, ScheduleRun, User
from taskgate.schedules import repository as repo
from taskgate.schedules import targets
from taskgate.settings import Settings

FIRED, SKIPPED, BUFFERED = "fired", "skipped", "buffered"
_PENDING_EVENTS = "schedule_events"
_NOTHING_STARTED = targets.Started()
_RUNS: Table = ScheduleRun.__table__  # type: ignore[assignment]
_EVENTS: Table = Event.__table__  # type: ignore[assignment]


@dataclass
class Tally:
    fired: int = 0
    skipped: int = 0
    buffered: int = 0

    def add(self, other: Tally) -> None:
        self.fired += other.fired
        self.skipped += other.skipped
        self.buffered += other.buffered


def owner_principal(user: User, project_id: uuid.UUID) -> Principal:
    """The schedule's owner, working in the schedule's project."""
    return Principal(
        user.id, user.username, user.is_admin, project_id=project_id, default_project_id=None
    )


@dataclass(frozen=True)
class Outcome:
    """What became of one occurrence of ``schedule``: its history row's content."""

    schedule: Schedule
    scheduled_for: datetime
    status: str
    reason: str | None
    trigger: str = "schedule"
    error: str | None = None
    started: targets.Started = _NOTHING_STARTED
    fired_at: datetime | None = None

    def columns(self) -> dict[str, Any]:
        """The history row's columns that say what happened (not which row it is)."""
        fired_at = self.fired_at
        return {
            "status": self.status,
            "reason": self.reason,
            "error": self.error,
            "fired_at": fired_at,
            "delay_ms": _delay_ms(fired_at, self.scheduled_for) if fired_at else None,
            "task_id": self.started.task_id,
            "execution_id": self.started.execution_id,
        }

    def event(self, run_id: uuid.UUID, trigger: str) -> dict[str, Any]:
        """The event announcing it, as column values."""
        s, started = self.schedule, self.started
        payload: dict[str, Any] = {
            "schedule_id": str(s.id),
            "schedule_name": s.name,
            "run_id": str(run_id),
            "scheduled_for": self.scheduled_for.isoformat(),
            "trigger": trigger,
            "reason": self.reason,
        }
        if self.status == SKIPPED:
            payload["error"] = self.error
        elif self.status == FIRED:
            assert self.fired_at is not None
            payload |= {
                "fired_at": self.fired_at.isoformat(),
                "delay_ms": _delay_ms(self.fired_at, self.scheduled_for),
                "task_id": str(started.task_id) if started.task_id else None,
                "execution_id": str(started.execution_id) if started.execution_id else None,
            }
        return event_values(
            _EVENT_TYPES[self.status],
            owner_id=s.owner_id,
            project_id=s.project_id,
            workflow_id=s.workflow_id,
            task_id=started.task_id,
            execution_id=started.execution_id,
            payload=payload,
        )

    def note_on_schedule(self) -> None:
        s = self.schedule
        if self.status == FIRED:
            s.total_runs += 1
            s.last_run_at = self.fired_at
        elif self.status == BUFFERED:
            s.buffered_for = self.scheduled_for


_EVENT_TYPES = {
    FIRED: "schedule.fired",
    SKIPPED: "schedule.skipped",
    BUFFERED: "schedule.buffered",
}


def _delay_ms(at: datetime, occurrence: datetime) -> int:
    return int((at - occurrence) / timedelta(milliseconds=1))


def record(
    session: AsyncSession, outcome: Outcome, existing: ScheduleRun | None = None
) -> ScheduleRun:
    """Write ``outcome`` as ORM objects: a new history row, or ``existing`` (a buffered
    occurrence's) updated, and its event. Nothing is flushed (:func:`announce` does), and a
    savepoint rolled back takes both away."""
    run = existing
    if run is None:
        run = ScheduleRun(
            id=new_id(),
            schedule_id=outcome.schedule.id,
            scheduled_for=outcome.scheduled_for,
            trigger=outcome.trigger,
        )
        session.add(run)
    for column, value in outcome.columns().items():
        setattr(run, column, value)
    outcome.note_on_schedule()
    event = Event(**outcome.event(run.id, run.trigger))
    session.add(event)
    session.info.setdefault(_PENDING_EVENTS, []).append(event)
    return run


class HistoryBatch:
    """New history rows of many schedules and their events, written by :meth:`write` with one
    multi-row INSERT per table: for a batch of firings the ORM's bookkeeping would otherwise
    cost more than the tasks themselves."""

    def __init__(self) -> None:
        self._outcomes: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        outcome.note_on_schedule()
        self._outcomes.append(outcome)

    async def write(self, session: AsyncSession) -> None:
        """Insert the rows in the session's transaction; the events are announced after
        commit. Call :func:`announce` first, so that events of rows written by :func:`record`
        (a buffered occurrence's, always a schedule's first) keep their place before these."""
        if not self._outcomes:
            return
        now = utcnow()
        runs: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        for outcome in self._outcomes:
            run_id = new_id()
            runs.append(
                {
                    "id": run_id,
                    "schedule_id": outcome.schedule.id,
                    "scheduled_for": outcome.scheduled_for,
                    "trigger": outcome.trigger,
                    "outcome": None,
                    "created_at": now,
                    **outcome.columns(),
                }
            )
            events.append(outcome.event(run_id, outcome.trigger))
        await session.execute(insert(_RUNS), runs)
        stored = await session.execute(
            insert(_EVENTS).returning(_EVENTS.c.id, sort_by_parameter_order=True), events
        )
        for event_id in stored.scalars():
            announce_after_commit(session, event_id)
        self._outcomes.clear()


async def announce(session: AsyncSession) -> None:
    """Flush the events written by :func:`record` and have them announced after commit."""
    pending: list[Event] = session.info.pop(_PENDING_EVENTS, [])
    if not pending:
        return
    await session.flush()
    for event in pending:
        if inspect(event).persistent:  # not rolled back with a savepoint
            signal_after_commit(session, EVENTS_COMMITTED, event.id)


def skip(
    session: AsyncSession,
    s: Schedule,
    occurrence: datetime,
    reason: str,
    *,
    error: str | None = None,
    trigger: str = "schedule",
    existing: ScheduleRun | None = None,
) -> ScheduleRun:
    return record(session, Outcome(s, occurrence, SKIPPED, reason, trigger, error), existing)


def buffer(session: AsyncSession, s: Schedule, occurrence: datetime) -> ScheduleRun:
    return record(session, Outcome(s, occurrence, BUFFERED, "overlap"))


def record_fired(
    session: AsyncSession,
    s: Schedule,
    occurrence: datetime,
    started: targets.Started,
    at: datetime,
    *,
    trigger: str = "schedule",
    reason: str | None = None,
    existing: ScheduleRun | None = None,
) -> ScheduleRun:
    """The history row and ``schedule.fired`` event of an occurrence whose task or execution
    ``started`` at ``at``."""
    fired = Outcome(s, occurrence, FIRED, reason, trigger, started=started, fired_at=at)
    return record(session, fired, existing)


async def fire_now(
    session: AsyncSession,
    s: Schedule,
    occurrence: datetime,
    owner: Principal,
    settings: Settings,
    now: datetime,
) -> ScheduleRun:
    """A manual run: start the target as ``owner`` and record it; a target that cannot start
    raises, and the caller's transaction (the request) fails with it."""
    started = await targets.start(session, s, owner, settings)
    return record_fired(session, s, occurrence, started, now, trigger="manual")


async def settle(session: AsyncSession, schedules: Sequence[Schedule]) -> dict[uuid.UUID, int]:
    """Copy the outcome of finished runs into their history rows; return how many runs of
    each schedule are still in flight (queued, running, paused or waiting)."""
    in_flight = {s.id: 0 for s in schedules}
    runs = await repo.unsettled_runs(session, list(in_flight))
    progress = await targets.progress_of(session, runs)
    for run in runs:
        state = progress.get(run.id)
        if state is None:
            continue
        if state.final:
            run.outcome = state.status
        else:
            in_flight[run.schedule_id] += 1
    return in_flight


def concurrency_limit(s: Schedule) -> int | None:
    """Runs that may be in flight at once; None for no limit."""
    return s.max_concurrent_runs if s.overlap == "allow" else 1
