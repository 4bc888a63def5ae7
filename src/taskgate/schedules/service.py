"""Schedule use cases: define, list, change, pause and resume, skip the next occurrence, run
now, and the history of what fired."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.db.session import signal_after_commit
from taskgate.errors import Conflict, NotFound, ValidationFailed
from taskgate.governance.access import authorize
from taskgate.governance.roles import scope_for
from taskgate.http.pagination import OffsetParams, Page, PageParams, paginate
from taskgate.ids import new_id
from taskgate.models import Schedule, ScheduleRun
from taskgate.schedules import firing, targets
from taskgate.schedules import repository as repo
from taskgate.schedules.definition import apply_definition, timing_of
from taskgate.schedules.occurrences import (
    ACTIVE,
    COMPLETED,
    PAUSED,
    SCHEDULES_CHANGED,
    refresh_due,
    reschedule,
)
from taskgate.schedules.schemas import (
    ScheduleCreate,
    ScheduleFields,
    ScheduleFilters,
    ScheduleList,
    ScheduleOut,
    ScheduleQueueSummary,
    ScheduleRunOut,
)
from taskgate.schedules.timing import next_fire
from taskgate.settings import Settings
from taskgate.versioning import ExpectedVersion, check_version

_TICK = timedelta(microseconds=1)


async def _changed(session: AsyncSession, s: Schedule, now: datetime, settings: Settings) -> None:
    refresh_due(s, now, settings.scheduler.tick_seconds)
    signal_after_commit(session, SCHEDULES_CHANGED, s.id)
    await firing.announce(session)


async def _record_change(
    session: AsyncSession,
    principal: Principal,
    s: Schedule,
    action: str,
    detail: dict[str, Any],
    *,
    settings: Settings,
    now: datetime,
) -> None:
    """A change to an existing schedule: its next version, the scheduler told, the audit."""
    s.version += 1
    await _changed(session, s, now, settings)
    await audit(
        session, action, principal, resource_type="schedule", resource_id=s.id, detail=detail
    )


async def create_schedule(
    session: AsyncSession,
    principal: Principal,
    body: ScheduleCreate,
    settings: Settings,
    now: datetime,
) -> Schedule:
    project_id = authorize(principal, "schedule:create")
    limit = settings.scheduler.max_schedules_per_user
    count = await repo.live_schedule_count(session, principal.user_id)
    if count >= limit:
        raise Conflict(
            f"You have {count} schedules and the limit is {limit}; delete or pause-and-delete "
            "one you no longer need first."
        )
    s = Schedule(
        id=new_id(),
        owner_id=principal.user_id,
        project_id=project_id,
        timezone="UTC",
        status=ACTIVE,
        enabled=True,
        total_runs=0,
        version=1,
    )
    default_zone = await repo.owner_timezone(session, principal.user_id) or "UTC"
    apply_definition(
        s,
        body,
        set(body.model_fields_set) | {"name"},
        settings=settings.scheduler,
        now=now,
        default_zone=default_zone,
        creating=True,
    )
    if s.workflow_id is not None:
        await targets.check_workflow(session, principal, s.workflow_id, project_id)
    if body.enabled is False:
        s.enabled, s.status = False, PAUSED
    reschedule(s, now)
    session.add(s)
    await _changed(session, s, now, settings)
    await session.flush()
    await audit(
        session,
        "schedule.create",
        principal,
        resource_type="schedule",
        resource_id=s.id,
        detail={"name": s.name},
    )
    return s


async def get_schedule(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    permission: str = "schedule:read",
) -> Schedule:
    """The schedule, if ``principal`` holds ``permission`` in its project (a member on what
    it created, an operator pauses, resumes and triggers anyone's, an admin changes
    anyone's), locked against the scheduler for any change; 404 when missing or in a
    project it does not see."""
    s = await repo.schedule_of(session, schedule_id, lock=permission != "schedule:read")
    if s is None:
        raise NotFound("Schedule not found.")
    authorize(principal, permission, project_id=s.project_id, owner_id=s.owner_id, resource_id=s.id)
    return s


async def list_schedules(
    session: AsyncSession,
    principal: Principal,
    filters: ScheduleFilters,
    paging: PageParams | OffsetParams,
) -> ScheduleList:
    """The schedules of the request's project, whoever made them. The Shannon form
    (OffsetParams, from ``page`` and ``page_size``) also answers ``schedules``, ``total``,
    ``page``."""
    listing = repo.schedules_listing(authorize(principal, "schedule:read"), filters)
    window = await paginate(session, listing, paging)
    items = [ScheduleOut.of(s) for s in window.rows]
    if isinstance(paging, OffsetParams):
        return ScheduleList(
            results=items,
            next=None,
            schedules=items,
            total=window.count,
            page=paging.offset // paging.limit + 1,
            page_size=paging.limit,
        )
    return ScheduleList(results=items, next=window.next, count=window.count)


async def list_runs(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    status: str | None,
    page: PageParams,
) -> Page[ScheduleRunOut]:
    """Past occurrences of the schedule, each with what it started and how that is doing."""
    schedule = await get_schedule(session, principal, schedule_id)
    if status not in (None, "fired", "skipped", "buffered"):
        raise ValidationFailed.field("status", "must be fired, skipped or buffered")
    window = await paginate(session, repo.runs_listing(schedule.id, status=status), page)
    progress = await targets.progress_of(session, window.rows)
    results = []
    for run in window.rows:
        state = progress.get(run.id)
        results.append(
            ScheduleRunOut.of(
                run,
                schedule.timezone,
                outcome=state.status if state else None,
                started_at=state.started_at if state else None,
                finished_at=state.finished_at if state else None,
            )
        )
    return window.page(results)


async def update_schedule(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    body: ScheduleFields,
    settings: Settings,
    now: datetime,
    *,
    if_match: ExpectedVersion | None,
) -> Schedule:
    """PATCH and PUT: only the fields sent change; a new timing counts from ``now``."""
    s = await get_schedule(session, principal, schedule_id, "schedule:update")
    check_version(if_match, s.version, "schedule")
    sent = set(body.model_fields_set)
    if not sent:
        return s
    default_zone = await repo.owner_timezone(session, s.owner_id) or "UTC"
    workflow_before = s.workflow_id
    timing_changed = apply_definition(
        s,
        body,
        sent - {"enabled"},
        settings=settings.scheduler,
        now=now,
        default_zone=default_zone,
        creating=False,
    )
    if s.workflow_id is not None and s.workflow_id != workflow_before:
        await targets.check_workflow(session, principal, s.workflow_id, s.project_id)
    if body.enabled is not None and body.enabled != s.enabled:
        if body.enabled:
            s.enabled = True
            if s.status == PAUSED:
                await _resume(session, s, now)
        else:
            await _pause(session, s, None)
    if timing_changed and s.status in (ACTIVE, COMPLETED):
        s.status = ACTIVE if s.enabled else PAUSED
        reschedule(s, now)
        if s.next_run_at is None and s.buffered_for is None:
            s.status = COMPLETED
    detail = {"fields": sorted(sent), "version": s.version + 1}
    await _record_change(
        session, principal, s, "schedule.update", detail, settings=settings, now=now
    )
    return s


async def delete_schedule(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    *,
    if_match: ExpectedVersion | None,
) -> None:
    """Delete the schedule and its history; the tasks it started stay."""
    s = await get_schedule(session, principal, schedule_id, "schedule:delete")
    check_version(if_match, s.version, "schedule")
    await session.delete(s)
    signal_after_commit(session, SCHEDULES_CHANGED, s.id)
    await audit(session, "schedule.delete", principal, resource_type="schedule", resource_id=s.id)


async def _pause(session: AsyncSession, s: Schedule, reason: str | None) -> None:
    s.enabled = False
    s.pause_reason = reason
    if s.status != COMPLETED:
        s.status = PAUSED
        s.next_run_at = None
    if s.buffered_for is not None:
        waiting = await repo.run_for(session, s.id, s.buffered_for)
        firing.skip(session, s, s.buffered_for, "paused", existing=waiting)
        s.buffered_for = None


async def _resume(session: AsyncSession, s: Schedule, now: datetime) -> None:
    """Back to ACTIVE from ``now`` on: occurrences that fell in the pause were never due. A
    one-off whose time passed during the pause is recorded as skipped and completes."""
    s.enabled, s.status, s.pause_reason = True, ACTIVE, None
    reschedule(s, now)
    if s.next_run_at is None:
        if s.run_at is not None and await repo.run_for(session, s.id, s.run_at) is None:
            firing.skip(session, s, s.run_at, "paused")
        s.status = COMPLETED


async def pause_schedule(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    reason: str | None,
    settings: Settings,
    now: datetime,
) -> Schedule:
    s = await get_schedule(session, principal, schedule_id, "schedule:pause")
    if s.status != ACTIVE:
        raise Conflict(f"Cannot pause a schedule that is {s.status}.")
    await _pause(session, s, reason)
    detail = {"reason": reason}
    await _record_change(
        session, principal, s, "schedule.pause", detail, settings=settings, now=now
    )
    return s


async def resume_schedule(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    reason: str | None,
    settings: Settings,
    now: datetime,
) -> Schedule:
    s = await get_schedule(session, principal, schedule_id, "schedule:resume")
    if s.status != PAUSED:
        raise Conflict(f"Cannot resume a schedule that is {s.status}.")
    await _resume(session, s, now)
    detail = {"reason": reason}
    await _record_change(
        session, principal, s, "schedule.resume", detail, settings=settings, now=now
    )
    return s


async def skip_next(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    settings: Settings,
    now: datetime,
) -> ScheduleRun:
    """Cancel only the next occurrence: recorded as skipped, the one after becomes next
    (pausing one occurrence: ``schedule:pause``)."""
    s = await get_schedule(session, principal, schedule_id, "schedule:pause")
    if s.status != ACTIVE or s.next_run_at is None:
        raise Conflict(f"A schedule that is {s.status} has no next occurrence to skip.")
    run = firing.skip(session, s, s.next_run_at, "skip-next")
    s.next_run_at = next_fire(timing_of(s), s.next_run_at)
    if s.next_run_at is None and s.buffered_for is None:
        s.status = COMPLETED
    detail = {"scheduled_for": run.scheduled_for.isoformat()}
    await _record_change(
        session, principal, s, "schedule.skip_next", detail, settings=settings, now=now
    )
    return run


async def trigger(
    session: AsyncSession,
    principal: Principal,
    schedule_id: uuid.UUID,
    settings: Settings,
    now: datetime,
) -> ScheduleRun:
    """Run now, whatever the schedule's state and overlap policy; recorded as a manual fire
    at ``now``. A target that cannot start fails the request instead of being recorded.
    The target starts as a firing's does: as the schedule's owner, in its project."""
    s = await get_schedule(session, principal, schedule_id, "schedule:trigger")
    # The target starts as its owner's, but a key never does more than its scopes allow.
    principal.require_scope(scope_for("workflow:run" if s.workflow_id else "task:create"))
    owner = await repo.owner_of(session, s.owner_id)
    if owner is None or not owner.is_active:
        raise Conflict("The schedule's owner is deactivated: the schedule cannot run.")
    occurrence = now
    timing = timing_of(s)
    # A manual run must not take the key of a real occurrence (or of an earlier manual run).
    while (
        next_fire(timing, occurrence - _TICK) == occurrence
        or await repo.run_for(session, s.id, occurrence) is not None
    ):
        occurrence += _TICK
    runner = firing.owner_principal(owner, s.project_id)
    run = await firing.fire_now(session, s, occurrence, runner, settings, now)
    await firing.announce(session)
    await audit(
        session,
        "schedule.trigger",
        principal,
        resource_type="schedule",
        resource_id=s.id,
        detail={"run_id": str(run.id), "task_id": str(run.task_id) if run.task_id else None},
    )
    return run


async def queue_summary(
    session: AsyncSession, principal: Principal, now: datetime
) -> ScheduleQueueSummary:
    """The schedules section of GET /api/v1/queue: the caller's in the request's project, or
    everyone's for admins."""
    owner = None if principal.is_admin else principal.user_id
    project = principal.project_id
    upcoming = await repo.next_due(session, owner, project)
    return ScheduleQueueSummary(
        by_state=await repo.counts_by_status(session, owner, project),
        due_now=await repo.due_count(session, now, owner, project),
        next_due_at=upcoming[1] if upcoming else None,
        next_due_schedule_id=upcoming[0] if upcoming else None,
    )
