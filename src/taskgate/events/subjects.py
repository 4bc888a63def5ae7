"""Which events a stream carries: a project's, narrowed to a subject, and which events end
it. A subject's stream follows the subject's project once its service found the subject for
the principal (which asks the authorization seam); a feed follows the request's project, if
the seam lets the principal read its events. Subjects belong to other features; their
services find them, handed in by the app (``Subjects``), so events import no feature."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.db.session import Database
from taskgate.errors import NotFound, ValidationFailed
from taskgate.events.filters import (
    EXECUTION_TERMINAL,
    RUN_TERMINAL,
    TASK_TERMINAL,
    EndCondition,
    StreamSpec,
    TypeFilter,
)
from taskgate.events.visibility import readable_families, reading_permission
from taskgate.governance.access import authorize

# A service's ``get_…(session, principal, id)``: the subject, or NotFound when it is missing or
# in a project the principal does not see.
Finder = Callable[[AsyncSession, Principal, uuid.UUID], Awaitable[Any]]
# Reading a task or a run (runs belong to tasks) takes this scope.
TASKS_READ = "tasks:read"


@dataclass(frozen=True)
class Subjects:
    """Where streams find their subjects (``taskgate/api.py:stream_subjects``)."""

    db: Database
    task: Finder
    run: Finder
    execution: Finder

    async def find(
        self,
        finder: Finder,
        principal: Principal,
        subject_id: uuid.UUID,
        *,
        scope: str | None = None,
    ) -> Any:
        """The subject; ``scope`` is the API-key scope reading it takes. Services check no
        scopes (routes declare theirs), and a stream's follow the subjects its query names,
        so they are checked here as each one is looked up."""
        if scope is not None:
            principal.require_scope(scope)
        async with self.db.transaction(write=False) as session:
            return await finder(session, principal, subject_id)


def _project(subject: Any) -> uuid.UUID | None:
    project_id: uuid.UUID | None = getattr(subject, "project_id", None)
    return project_id


def _spec(principal: Principal, project_id: uuid.UUID | None, **fields: Any) -> StreamSpec:
    """A stream of the events its principal may read (``visibility``) in ``project_id`` (the
    subject's), or in the request's project (None)."""
    readable = readable_families(principal)
    project = authorize(principal, reading_permission(readable), project_id=project_id)
    return StreamSpec(project, readable=readable, **fields)


def _task_end(task_id: uuid.UUID) -> EndCondition:
    return EndCondition("task_id", task_id, TASK_TERMINAL)


async def task_stream(
    subjects: Subjects, principal: Principal, task_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    task = await subjects.find(subjects.task, principal, task_id, scope=TASKS_READ)
    return _spec(
        principal,
        _project(task),
        equals=(("task_id", task_id),),
        types=types,
        ends=(_task_end(task_id),),
        replay=True,
    )


async def run_stream(
    subjects: Subjects, principal: Principal, run_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    run = await subjects.find(subjects.run, principal, run_id, scope=TASKS_READ)
    return _spec(
        principal,
        _project(run),
        equals=(("run_id", run_id),),
        types=types,
        ends=_run_ends(run, run_id),
        replay=True,
    )


def _run_ends(run: Any, run_id: uuid.UUID) -> tuple[EndCondition, ...]:
    # A run ends with its own terminal event, or when the task it belongs to ends.
    ends = [EndCondition("run_id", run_id, RUN_TERMINAL)]
    task_id: uuid.UUID | None = getattr(run, "task_id", None)
    if task_id is not None:
        ends.append(_task_end(task_id))
    return tuple(ends)


async def execution_stream(
    subjects: Subjects, principal: Principal, execution_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    execution = await subjects.find(subjects.execution, principal, execution_id)
    return _spec(
        principal,
        _project(execution),
        equals=(("execution_id", execution_id),),
        types=types,
        ends=_execution_ends(execution_id),
        replay=True,
    )


def _execution_ends(execution_id: uuid.UUID) -> tuple[EndCondition, ...]:
    return (EndCondition("execution_id", execution_id, EXECUTION_TERMINAL),)


def session_stream(
    principal: Principal, session_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    """A session's events, in the request's project (sessions have no service to find them
    with yet)."""
    return _spec(principal, None, equals=(("session_id", session_id),), types=types, replay=True)


async def filtered_stream(
    subjects: Subjects,
    principal: Principal,
    *,
    task_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    execution_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    workflow_id: uuid.UUID | None = None,
    types: TypeFilter | None = None,
) -> StreamSpec:
    """``GET /stream/sse``: any combination of filters. A named task, run or execution is
    checked, and the stream ends with it (the most specific one given) and follows its
    project; without one, the request's project."""
    if (
        workflow_id is not None
        and task_id is None
        and await _is_task(subjects, principal, workflow_id)
    ):
        # Shannon clients name the task they follow ``workflow_id``.
        task_id, workflow_id = workflow_id, None
    ends: tuple[EndCondition, ...] = ()
    # The project of the subjects named (events must match them all, so one project).
    project: uuid.UUID | None = None
    if execution_id is not None:
        execution = await subjects.find(subjects.execution, principal, execution_id)
        ends = _execution_ends(execution_id)
        project = _project(execution)
    if run_id is not None:
        run = await subjects.find(subjects.run, principal, run_id, scope=TASKS_READ)
        ends = _run_ends(run, run_id)
        project = _project(run) or project
    if task_id is not None:
        task = await subjects.find(subjects.task, principal, task_id, scope=TASKS_READ)
        ends = (_task_end(task_id),)
        project = _project(task) or project
    named = {
        "task_id": task_id,
        "run_id": run_id,
        "execution_id": execution_id,
        "session_id": session_id,
        "workflow_id": workflow_id,
    }
    equals = tuple((column, value) for column, value in named.items() if value is not None)
    subject = any(v is not None for v in (task_id, run_id, execution_id, session_id))
    return _spec(principal, project, equals=equals, types=types, ends=ends, replay=subject)


async def _is_task(subjects: Subjects, principal: Principal, subject_id: uuid.UUID) -> bool:
    try:
        return (
            await subjects.find(subjects.task, principal, subject_id, scope=TASKS_READ) is not None
        )
    except NotFound:
        return False


_FEEDS = {"events": (), "tasks": ("task_id",), "executions": ("execution_id",)}


async def channel_stream(
    subjects: Subjects, principal: Principal, channel: str, types: TypeFilter | None
) -> StreamSpec:
    """A WebSocket channel: ``tasks:<id>``, ``runs:<id>``, ``executions:<id>``,
    ``sessions:<id>``, or the feeds ``tasks``, ``executions``, ``events``."""
    kind, colon, raw = channel.partition(":")
    if not colon:
        if kind not in _FEEDS:
            raise ValidationFailed.field("channel", f"unknown channel {channel[:80]!r}")
        return _spec(principal, None, present=_FEEDS[kind], types=types)
    try:
        subject_id = uuid.UUID(raw)
    except ValueError:
        raise ValidationFailed.field("channel", f"{raw[:80]!r} is not an id") from None
    if kind == "tasks":
        return await task_stream(subjects, principal, subject_id, types)
    if kind == "runs":
        return await run_stream(subjects, principal, subject_id, types)
    if kind == "executions":
        return await execution_stream(subjects, principal, subject_id, types)
    if kind == "sessions":
        return session_stream(principal, subject_id, types)
    raise ValidationFailed.field("channel", f"unknown channel {channel[:80]!r}")
