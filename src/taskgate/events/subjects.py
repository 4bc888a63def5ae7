"""Which events a stream carries: a project's, narrowed to a subject, and which events end
it. A subject's stream follows the subject's project once its service found the subject for
the principal (which asks the authorization seam); a feed follows the request's project, if
the seam lets the principal read its events. Subjects belong to other features, looked up
through their services (imported when needed: a feature that is not installed has no
subjects to find)."""

from __future__ import annotations

import importlib
import uuid
from types import ModuleType
from typing import Any

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
from taskgate.identity.principal import Principal

_TASKS = ("taskgate.tasks.service", "get_task", "Task not found.")
_RUNS = ("taskgate.runs.service", "get_run", "Run not found.")
_EXECUTIONS = (
    "taskgate.workflows.executions_service",
    "get_execution",
    "Workflow executions are not available on this server.",
)
_SESSIONS = ("taskgate.sessions.service", "get_session", "Session not found.")


def _feature(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise


async def _lookup(
    db: Database,
    principal: Principal,
    target: tuple[str, str, str],
    subject_id: uuid.UUID,
    *,
    required: bool,
) -> Any | None:
    """The subject from its service (NotFound when missing or in a project the principal does
    not see); None when the feature is not installed and ``required`` is false (the stream
    then follows the request's project)."""
    module_name, function, missing = target
    module = _feature(module_name)
    finder = getattr(module, function, None) if module is not None else None
    if finder is None:
        if required:
            raise NotFound(missing)
        return None
    async with db.transaction(write=False) as session:
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
    db: Database, principal: Principal, task_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    task = await _lookup(db, principal, _TASKS, task_id, required=True)
    return _spec(
        principal,
        _project(task),
        equals=(("task_id", task_id),),
        types=types,
        ends=(_task_end(task_id),),
        replay=True,
    )


async def run_stream(
    db: Database, principal: Principal, run_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    run = await _lookup(db, principal, _RUNS, run_id, required=True)
    return _run_spec(principal, run, run_id, types)


def _run_ends(run: Any, run_id: uuid.UUID) -> tuple[EndCondition, ...]:
    # A run ends with its own terminal event, or when the task it belongs to ends.
    ends = [EndCondition("run_id", run_id, RUN_TERMINAL)]
    task_id: uuid.UUID | None = getattr(run, "task_id", None)
    if task_id is not None:
        ends.append(_task_end(task_id))
    return tuple(ends)


def _run_spec(
    principal: Principal, run: Any, run_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    return _spec(
        principal,
        _project(run),
        equals=(("run_id", run_id),),
        types=types,
        ends=_run_ends(run, run_id),
        replay=True,
    )


async def execution_stream(
    db: Database, principal: Principal, execution_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    execution = await _lookup(db, principal, _EXECUTIONS, execution_id, required=True)
    return _execution_spec(principal, execution, execution_id, types)


def _execution_ends(execution_id: uuid.UUID) -> tuple[EndCondition, ...]:
    return (EndCondition("execution_id", execution_id, EXECUTION_TERMINAL),)


def _execution_spec(
    principal: Principal, execution: Any, execution_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    return _spec(
        principal,
        _project(execution),
        equals=(("execution_id", execution_id),),
        types=types,
        ends=_execution_ends(execution_id),
        replay=True,
    )


async def session_stream(
    db: Database, principal: Principal, session_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    chat = await _lookup(db, principal, _SESSIONS, session_id, required=False)
    return _spec(
        principal, _project(chat), equals=(("session_id", session_id),), types=types, replay=True
    )


async def filtered_stream(
    db: Database,
    principal: Principal,
    *,
    task_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    execution_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    workflow_id: uuid.UUID | None = None,
    types: TypeFilter | None = None,
) -> StreamSpec:
    """``GET /stream/sse``: any combination of filters. A named subject is checked when its
    feature is installed, and the stream ends with it (the most specific one given) and
    follows its project; without one, the request's project."""
    if workflow_id is not None and task_id is None and await _is_task(db, principal, workflow_id):
        # Shannon clients name the task they follow ``workflow_id``.
        task_id, workflow_id = workflow_id, None
    ends: tuple[EndCondition, ...] = ()
    # The project of the subjects named (events must match them all, so one project).
    project: uuid.UUID | None = None
    if session_id is not None:
        project = _project(await _lookup(db, principal, _SESSIONS, session_id, required=False))
    if execution_id is not None:
        execution = await _lookup(db, principal, _EXECUTIONS, execution_id, required=False)
        ends = _execution_ends(execution_id)
        project = _project(execution) or project
    if run_id is not None:
        run = await _lookup(db, principal, _RUNS, run_id, required=False)
        ends = _run_ends(run, run_id)
        project = _project(run) or project
    if task_id is not None:
        task = await _lookup(db, principal, _TASKS, task_id, required=False)
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


async def _is_task(db: Database, principal: Principal, subject_id: uuid.UUID) -> bool:
    try:
        return await _lookup(db, principal, _TASKS, subject_id, required=False) is not None
    except NotFound:
        return False


_FEEDS = {"events": (), "tasks": ("task_id",), "executions": ("execution_id",)}


async def channel_stream(
    db: Database, principal: Principal, channel: str, types: TypeFilter | None
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
        return await task_stream(db, principal, subject_id, types)
    if kind == "runs":
        return await run_stream(db, principal, subject_id, types)
    if kind == "executions":
        return await execution_stream(db, principal, subject_id, types)
    if kind == "sessions":
        return await session_stream(db, principal, subject_id, types)
    raise ValidationFailed.field("channel", f"unknown channel {channel[:80]!r}")
