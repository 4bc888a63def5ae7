"""Turn a request body into a schedule's definition: timing, target and policies, validated.

Create and update share one path: the fields sent are laid over the schedule's current
values (empty for a new one) and the result is checked as a whole, so a PATCH can never
leave a schedule in a state a POST would have refused.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from taskgate.errors import FieldProblem, ValidationFailed
from taskgate.http.errors import validation_problems
from taskgate.models import Schedule
from taskgate.schedules.schemas import ScheduleFields
from taskgate.schedules.timing import Timing, TimingError, fires_between, validate_timing
from taskgate.settings import SchedulerSettings
from taskgate.tasks.schemas import TaskCreate

TIMING_FIELDS = ("cron_expression", "run_at", "interval_seconds", "start_at")
TARGET_FIELDS = ("task", "task_query", "task_context", "workflow_id", "input")
_KINDS = ("cron_expression", "run_at", "interval_seconds")
_TASK_INPUTS = ("query", "script", "commands")
# How far ahead a cron expression is sampled to check it against the minimum interval.
_CRON_SAMPLE = 60


def schedule_label(schedule_id: uuid.UUID) -> str:
    return f"schedule:{schedule_id}"


def timing_of(s: Schedule) -> Timing:
    return Timing(
        cron_expression=s.cron_expression,
        run_at=s.run_at,
        interval_seconds=s.interval_seconds,
        timezone=s.timezone,
        anchor=s.anchor_at,
    )


def apply_definition(
    s: Schedule,
    body: ScheduleFields,
    sent: set[str],
    *,
    settings: SchedulerSettings,
    now: datetime,
    default_zone: str,
    creating: bool,
) -> bool:
    """Lay the ``sent`` fields of ``body`` over ``s``; True when the timing changed."""
    for name in ("name", "description", "timeout_seconds", "max_budget_per_run_usd"):
        if name in sent:
            if name == "name" and body.name is None:
                raise ValidationFailed.field("name", "must not be empty")
            setattr(s, name, getattr(body, name))
    timing_changed = _apply_zone(s, body, sent, default_zone, creating)
    if creating or sent & set(TIMING_FIELDS):
        _apply_timing(s, body, sent, settings, now)
        timing_changed = True
    if creating or sent & set(TARGET_FIELDS):
        _apply_target(s, body, sent, creating)
    elif "timeout_seconds" in sent and s.task_template is not None:
        check_task_template(s.task_template, s.timeout_seconds)
    _apply_policies(s, body, sent, settings, creating)
    return timing_changed


def _apply_zone(
    s: Schedule, body: ScheduleFields, sent: set[str], default_zone: str, creating: bool
) -> bool:
    if not creating and "timezone" not in sent:
        return False
    zone = body.timezone if "timezone" in sent and body.timezone is not None else default_zone
    try:
        validate_timing(Timing(interval_seconds=60, timezone=zone), min_interval_seconds=1)
    except TimingError as error:
        raise ValidationFailed.field(error.field, error.message) from None
    changed = zone != s.timezone
    s.timezone = zone
    return changed


def _apply_timing(
    s: Schedule,
    body: ScheduleFields,
    sent: set[str],
    settings: SchedulerSettings,
    now: datetime,
) -> None:
    if sent & set(_KINDS):
        cron, run_at, interval = body.cron_expression, body.run_at, body.interval_seconds
    else:  # only start_at: keep the kind
        cron, run_at, interval = s.cron_expression, s.run_at, s.interval_seconds
    if run_at is not None and run_at.utcoffset() is None:
        # A wall-clock time without an offset means that time where the schedule lives.
        run_at = run_at.replace(tzinfo=ZoneInfo(s.timezone))
    start_at = body.start_at if "start_at" in sent else None
    if start_at is not None:
        if interval is None:
            raise ValidationFailed.field("start_at", "applies only to interval_seconds schedules")
        if start_at.utcoffset() is None:
            start_at = start_at.replace(tzinfo=ZoneInfo(s.timezone))
    timing = Timing(
        cron_expression=cron,
        run_at=run_at,
        interval_seconds=interval,
        timezone=s.timezone,
        anchor=start_at,
    )
    try:
        validate_timing(timing, min_interval_seconds=settings.min_interval_seconds)
    except TimingError as error:
        raise ValidationFailed.field(error.field, error.message) from None
    if cron is not None:
        _check_cron_spacing(timing, settings.min_interval_seconds, now)
    if run_at is not None and run_at < now:
        raise ValidationFailed.field("run_at", "is in the past; use /trigger to run now")
    s.cron_expression = cron
    s.run_at = run_at.astimezone(UTC) if run_at is not None else None
    s.interval_seconds = interval
    if interval is None:
        s.anchor_at = None
    elif start_at is not None:
        s.anchor_at = start_at.astimezone(UTC)
    else:
        # First occurrence one interval from now, on whole seconds so times read cleanly.
        s.anchor_at = now.replace(microsecond=0) + timedelta(seconds=interval)


def _check_cron_spacing(timing: Timing, minimum: int, now: datetime) -> None:
    if minimum <= 60:
        return  # cron cannot fire more often than once a minute
    fires = fires_between(timing, now, now + timedelta(days=800), limit=_CRON_SAMPLE)
    if any((b - a).total_seconds() < minimum for a, b in pairwise(fires)):
        raise ValidationFailed.field(
            "cron_expression", f"fires more often than once every {minimum} seconds"
        )


def _apply_target(s: Schedule, body: ScheduleFields, sent: set[str], creating: bool) -> None:
    wants_task = bool({"task", "task_query", "task_context"} & sent)
    if "workflow_id" in sent and body.workflow_id is not None:
        if wants_task:
            field = next(f for f in ("task", "task_query", "task_context") if f in sent)
            raise ValidationFailed.field(field, "give either a task or a workflow_id, not both")
        s.workflow_id = body.workflow_id
        s.workflow_input = body.input or {}
        s.task_template = None
        return
    if "input" in sent and body.input is not None and (wants_task or s.workflow_id is None):
        raise ValidationFailed.field("input", "applies only to schedules with a workflow_id")
    if "input" in sent and not wants_task:
        s.workflow_input = body.input or {}
        return
    if "task" in sent and "task_query" in sent:
        raise ValidationFailed.field("task_query", "give either task or task_query, not both")
    template: dict[str, Any] | None
    if "task" in sent:
        template = dict(body.task) if body.task is not None else None
    else:
        template = dict(s.task_template) if s.task_template is not None else None
    if "task_query" in sent and body.task_query is not None:
        template = {k: v for k, v in (template or {}).items() if k not in _TASK_INPUTS}
        template["query"] = body.task_query
    if "task_context" in sent:
        if template is None:
            raise ValidationFailed.field("task_context", "needs task_query or task")
        template["context"] = body.task_context or {}
    if template is None:
        raise ValidationFailed.field(
            "task", "give the task to run (task or task_query), or a workflow_id"
        )
    check_task_template(template, body.timeout_seconds or s.timeout_seconds)
    s.task_template = template
    s.workflow_id = None
    s.workflow_input = None


def check_task_template(template: dict[str, Any], timeout_seconds: int | None) -> TaskCreate:
    """The task body each occurrence will submit, checked now so firing cannot fail on it."""
    trial = task_body(template, uuid.UUID(int=0), timeout_seconds)
    try:
        body = TaskCreate.model_validate(trial)
    except ValidationError as error:
        problems = [
            FieldProblem(f"task.{p.field}", p.message) for p in validation_problems(error.errors())
        ]
        raise ValidationFailed("The task is not valid.", details=problems) from None
    given = [name for name in _TASK_INPUTS if getattr(body, name) is not None]
    if len(given) != 1:
        raise ValidationFailed.field("task", "give exactly one of query, script or commands")
    return body


def task_body(
    template: dict[str, Any], schedule_id: uuid.UUID, timeout_seconds: int | None
) -> dict[str, Any]:
    labels = list(template.get("labels") or [])
    body = {**template, "labels": [*labels, schedule_label(schedule_id)]}
    if timeout_seconds is not None:
        body["timeout_seconds"] = timeout_seconds
    return body


def _apply_policies(
    s: Schedule,
    body: ScheduleFields,
    sent: set[str],
    settings: SchedulerSettings,
    creating: bool,
) -> None:
    if "catchup" in sent or creating:
        s.catchup = body.catchup or settings.default_catchup
    if "max_concurrent_runs" in sent:
        s.max_concurrent_runs = body.max_concurrent_runs
    if "overlap" in sent and body.overlap is not None:
        s.overlap = body.overlap
    elif creating:
        many = (s.max_concurrent_runs or 1) > 1
        s.overlap = "allow" if many else "skip"
    if s.overlap != "allow" and (s.max_concurrent_runs or 1) > 1:
        raise ValidationFailed.field(
            "max_concurrent_runs",
            f"applies only to overlap 'allow'; with '{s.overlap}' runs never overlap",
        )
    if "jitter_seconds" in sent or creating:
        s.jitter_seconds = body.jitter_seconds or 0
    if s.interval_seconds is not None and s.jitter_seconds >= s.interval_seconds:
        raise ValidationFailed.field("jitter_seconds", "must be shorter than interval_seconds")
