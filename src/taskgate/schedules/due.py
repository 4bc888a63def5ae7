"""What the scheduler does with a due schedule, in three steps: decide (no I/O), start the
tasks or executions, then write the history, events and the schedule's new state.

Deciding first lets the scheduler start every target of a batch before writing any of its
own rows, so those rows go out in a few multi-row statements at the end of the batch
instead of riding along, one by one, in each task's own flush.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.errors import TaskgateError
from taskgate.models import Schedule, User
from taskgate.schedules import firing, targets
from taskgate.schedules import repository as repo
from taskgate.schedules.clock import Clock
from taskgate.schedules.definition import timing_of
from taskgate.schedules.firing import Tally
from taskgate.schedules.occurrences import COMPLETED, fires_at, refresh_due
from taskgate.schedules.timing import plan_catchup
from taskgate.settings import Settings

Action = Literal["fire", "skip", "buffer"]


@dataclass(frozen=True)
class Step:
    occurrence: datetime
    action: Action
    reason: str | None
    was_buffered: bool = False  # its history row exists already (status buffered)


@dataclass
class DuePlan:
    steps: list[Step]
    next_run_at: datetime | None
    buffered_for: datetime | None
    # One entry per "fire" step, in order: what started, and when, or why it could not.
    started: list[tuple[targets.Started, datetime] | TaskgateError] = field(default_factory=list)


def plan_due(
    s: Schedule,
    owner: User | None,
    in_flight: int,
    settings: Settings,
    now: datetime,
    *,
    project_active: bool = True,
) -> DuePlan:
    """Decide the fate of every occurrence due on ``s`` at ``now``: a buffered occurrence
    whose turn came, then the ones since ``next_run_at`` under the catch-up policy, each
    fired, buffered or skipped under the overlap policy. Nothing fires while the owner is
    deactivated or the schedule's project disabled: those occurrences are skipped, with
    that reason, and the schedule moves on as if they had fired."""
    blocked = (
        "project_disabled"
        if not project_active
        else None
        if owner is not None and owner.is_active
        else "owner_inactive"
    )
    active = blocked is None
    limit = firing.concurrency_limit(s)
    grace = settings.scheduler.misfire_grace_seconds + s.jitter_seconds
    steps: list[Step] = []
    buffered_for = s.buffered_for
    next_run_at = s.next_run_at

    def has_room() -> bool:
        return limit is None or in_flight < limit

    if buffered_for is not None and (not active or has_room()):
        if active:
            steps.append(Step(buffered_for, "fire", "buffered", was_buffered=True))
            in_flight += 1
        else:
            steps.append(Step(buffered_for, "skip", blocked, was_buffered=True))
        buffered_for = None

    if next_run_at is not None and fires_at(s, next_run_at) <= now:
        plan = plan_catchup(
            timing_of(s),
            last_due=next_run_at,
            now=now,
            policy=s.catchup,  # type: ignore[arg-type]
            cap=settings.scheduler.catchup_cap,
            grace_seconds=grace,
        )
        steps.extend(Step(occurrence, "skip", "catchup") for occurrence in plan.skip)
        for occurrence in plan.fire:
            if not active:
                steps.append(Step(occurrence, "skip", blocked))
            elif has_room():
                late = (now - occurrence).total_seconds() > grace
                steps.append(Step(occurrence, "fire", "catchup" if late else None))
                in_flight += 1
            elif s.overlap == "buffer_one" and buffered_for is None:
                steps.append(Step(occurrence, "buffer", "overlap"))
                buffered_for = occurrence
            else:
                reason = "max_concurrent_runs" if s.overlap == "allow" else "overlap"
                steps.append(Step(occurrence, "skip", reason))
        next_run_at = plan.next_run_at
    return DuePlan(steps, next_run_at, buffered_for)


async def start_batch(
    session: AsyncSession,
    batch: Sequence[tuple[Schedule, User | None, DuePlan]],
    settings: Settings,
    clock: Clock,
) -> None:
    """Start the task or execution of every "fire" step of a whole batch at once (the tasks
    in one bulk insert). A target refused by a check is kept as its error (recorded as a
    skip, not retried); any other failure propagates and the caller's transaction is lost."""
    wanted: list[tuple[Schedule, Principal]] = []
    for s, owner, plan in batch:
        fires = sum(step.action == "fire" for step in plan.steps)
        if fires:
            assert owner is not None
            wanted.extend([(s, firing.owner_principal(owner, s.project_id))] * fires)
    if not wanted:
        return
    results = iter(await targets.start_many(session, wanted, settings))
    at = clock.now()
    for _s, _owner, plan in batch:
        for step in plan.steps:
            if step.action == "fire":
                result = next(results)
                plan.started.append(result if isinstance(result, TaskgateError) else (result, at))


async def start_targets(
    session: AsyncSession,
    s: Schedule,
    owner: User | None,
    plan: DuePlan,
    settings: Settings,
    clock: Clock,
) -> None:
    """Start the task or execution of every "fire" step of one schedule, each in a savepoint:
    a target that cannot start is kept as its error (recorded as a skip, not retried)."""
    fires = [step for step in plan.steps if step.action == "fire"]
    if not fires:
        return
    assert owner is not None
    principal = firing.owner_principal(owner, s.project_id)
    for _ in fires:
        try:
            async with session.begin_nested():
                started = await targets.start(session, s, principal, settings)
            plan.started.append((started, clock.now()))
        except TaskgateError as failure:
            plan.started.append(failure)


async def apply_plan(
    session: AsyncSession,
    s: Schedule,
    plan: DuePlan,
    settings: Settings,
    now: datetime,
    *,
    into: firing.HistoryBatch | None = None,
) -> Tally:
    """Record what ``plan`` did with each occurrence and move the schedule on. New history
    rows go into ``into`` when given, for the caller to write with the rest of its batch;
    otherwise, and always for a buffered occurrence's existing row, through the ORM."""
    tally = Tally()
    results = iter(plan.started)
    for step in plan.steps:
        outcome = _outcome(s, step, results)
        if outcome.status == firing.FIRED:
            tally.fired += 1
        elif outcome.status == firing.BUFFERED:
            tally.buffered += 1
        else:
            tally.skipped += 1
        if step.was_buffered:
            existing = await repo.run_for(session, s.id, step.occurrence)
            firing.record(session, outcome, existing)
        elif into is not None:
            into.add(outcome)
        else:
            firing.record(session, outcome)
    s.next_run_at, s.buffered_for = plan.next_run_at, plan.buffered_for
    if s.next_run_at is None and s.buffered_for is None:
        s.status = COMPLETED
    refresh_due(s, now, settings.scheduler.tick_seconds)
    return tally


def _outcome(
    s: Schedule,
    step: Step,
    results: Iterator[tuple[targets.Started, datetime] | TaskgateError],
) -> firing.Outcome:
    if step.action == "buffer":
        return firing.Outcome(s, step.occurrence, firing.BUFFERED, "overlap")
    if step.action == "skip":
        return firing.Outcome(s, step.occurrence, firing.SKIPPED, step.reason or "")
    result = next(results)
    if isinstance(result, TaskgateError):
        detail = "; ".join(f"{d.field}: {d.message}" for d in result.details)
        return firing.Outcome(
            s, step.occurrence, firing.SKIPPED, "error", error=detail or result.message
        )
    started, at = result
    return firing.Outcome(
        s, step.occurrence, firing.FIRED, step.reason, started=started, fired_at=at
    )
