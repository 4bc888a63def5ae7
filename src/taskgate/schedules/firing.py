"""One occurrence of a schedule: fired, skipped or buffered, always with its history row.

Everything here runs inside the caller's transaction: the history row, the task or
execution it starts, the event and the schedule's new state commit together or not at all,
and the UNIQUE (schedule_id, scheduled_for) key on the history row makes a second firing of
an occurrence fail the transaction, so it can never create a second task. Callers end with
:func:`announce`, which flushes the events written here and announces them after commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.session import signal_after_commit
from taskgate.events.outbox import EVENTS_COMMITTED
from taskgate.http.context import current_trace_id
from taskgate.identity.principal import Principal
from taskgate.ids import new_id
from taskgate.models import Event, Schedule, ScheduleRun, User
from taskgate.schedules import repository as repo
from taskgate.schedules import targets
from taskgate.settings import Settings

FIRED, SKIPPED, BUFFERED = "fired", "skipped", "buffered"
_PENDING_EVENTS = "schedule_events"


@dataclass
class Tally:
    fired: int = 0
    skipped: int = 0
    buffered: int = 0

    def add(self, other: Tally) -> None:
        self.fired += other.fired
        self.skipped += other.skipped
        self.buffered += other.buffered


def owner_principal(user: User) -> Principal:
    return Principal(user.id, user.username, user.is_admin)


def _delay_ms(now: datetime, occurrence: datetime) -> int:
    return int((now - occurrence) / timedelta(milliseconds=1))


def _event(session: AsyncSession, s: Schedule, type: str, payload: dict[str, Any]) -> None:
    """Write an event row without flushing (firing is the scheduler's hot path and a flush
    per event would double its cost); :func:`announce` flushes and announces them."""
    event = Event(
        type=type,
        owner_id=s.owner_id,
        workflow_id=s.workflow_id,
        task_id=_uuid(payload.get("task_id")),
        execution_id=_uuid(payload.get("execution_id")),
        payload=payload,
        trace_id=current_trace_id(),
    )
    session.add(event)
    session.info.setdefault(_PENDING_EVENTS, []).append(event)


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


async def announce(session: AsyncSession) -> None:
    """Flush the events written by this module and have them announced after commit."""
    pending: list[Event] = session.info.pop(_PENDING_EVENTS, [])
    if not pending:
        return
    await session.flush()
    for event in pending:
        if inspect(event).persistent:  # not rolled back with a savepoint
            signal_after_commit(session, EVENTS_COMMITTED, event.id)


def _history_row(
    session: AsyncSession,
    s: Schedule,
    occurrence: datetime,
    trigger: str,
    existing: ScheduleRun | None,
) -> ScheduleRun:
    if existing is not None:
        return existing
    run = ScheduleRun(
        id=new_id(), schedule_id=s.id, scheduled_for=occurrence, trigger=trigger, status=SKIPPED
    )
    session.add(run)
    return run


def _payload(s: Schedule, run: ScheduleRun) -> dict[str, Any]:
    return {
        "schedule_id": str(s.id),
        "schedule_name": s.name,
        "run_id": str(run.id),
        "scheduled_for": run.scheduled_for.isoformat(),
        "trigger": run.trigger,
        "reason": run.reason,
    }


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
    run = _history_row(session, s, occurrence, trigger, existing)
    run.status, run.reason, run.error = SKIPPED, reason, error
    _event(session, s, "schedule.skipped", {**_payload(s, run), "error": error})
    return run


def buffer(session: AsyncSession, s: Schedule, occurrence: datetime) -> ScheduleRun:
    run = _history_row(session, s, occurrence, "schedule", None)
    run.status, run.reason = BUFFERED, "overlap"
    s.buffered_for = occurrence
    _event(session, s, "schedule.buffered", _payload(s, run))
    return run


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
    run = _history_row(session, s, occurrence, trigger, existing)
    run.status, run.reason = FIRED, reason
    run.fired_at, run.delay_ms = at, _delay_ms(at, occurrence)
    run.task_id, run.execution_id = started.task_id, started.execution_id
    s.total_runs += 1
    s.last_run_at = at
    _event(
        session,
        s,
        "schedule.fired",
        {
            **_payload(s, run),
            "fired_at": at.isoformat(),
            "delay_ms": run.delay_ms,
            "task_id": str(started.task_id) if started.task_id else None,
            "execution_id": str(started.execution_id) if started.execution_id else None,
        },
    )
    return run


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
