"""Which events a stream carries: the principal's own, narrowed to a subject it owns, and
which events end it. Subjects belong to other features, looked up through their services
(imported when needed: a feature that is not installed has no subjects to find)."""

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
from taskgate.events.visibility import readable_families
from taskgate.identity.principal import Principal

# (service module, its look-up, the message when it is missing, the API-key scope reading
# the subject takes). Services check no scopes (routes declare theirs); a stream's scopes
# follow the subjects its query names, so they are checked here as each one is looked up.
Target = tuple[str, str, str, str | None]
_TASKS: Target = ("taskgate.tasks.service", "get_task", "Task not found.", "tasks:read")
_RUNS: Target = ("taskgate.runs.service", "get_run", "Run not found.", "tasks:read")
_EXECUTIONS: Target = (
    "taskgate.workflows.executions_service",
    "get_execution",
    "Workflow executions are not available on this server.",
    None,
)
_SESSIONS: Target = ("taskgate.sessions.service", "get_session", "Session not found.", None)


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
    target: Target,
    subject_id: uuid.UUID,
    *,
    required: bool,
) -> Any | None:
    """The subject from its service (NotFound when missing or someone else's); None when the
    feature is not installed and ``required`` is false (the owner filter still applies)."""
    module_name, function, missing, scope = target
    module = _feature(module_name)
    finder = getattr(module, function, None) if module is not None else None
    if finder is None:
        if required:
            raise NotFound(missing)
        return None
    if scope is not None:
        principal.require_scope(scope)
    async with db.transaction(write=False) as session:
        return await finder(session, principal, subject_id)


def _spec(principal: Principal, **fields: Any) -> StreamSpec:
    """Every stream shows only the events its principal may read (``visibility``), in the
    project its request works in."""
    return StreamSpec(
        principal.user_id,
        readable=readable_families(principal),
        project_id=principal.project_id,
        **fields,
    )


def _task_end(task_id: uuid.UUID) -> EndCondition:
    return EndCondition("task_id", task_id, TASK_TERMINAL)


async def task_stream(
    db: Database, principal: Principal, task_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    await _lookup(db, principal, _TASKS, task_id, required=True)
    return _spec(
        principal,
        equals=(("task_id", task_id),),
        types=types,
        ends=(_task_end(task_id),),
        replay=True,
    )


async def run_stream(
    db: Database, principal: Principal, run_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    run = await _lookup(db, principal, _RUNS, run_id, required=True)
    return _run_spec(principal, run_id, getattr(run, "task_id", None), types)


def _run_spec(
    principal: Principal, run_id: uuid.UUID, task_id: uuid.UUID | None, types: TypeFilter | None
) -> StreamSpec:
    # A run ends with its own terminal event, or when the task it belongs to ends.
    ends = [EndCondition("run_id", run_id, RUN_TERMINAL)]
    if task_id is not None:
        ends.append(_task_end(task_id))
    return _spec(
        principal, equals=(("run_id", run_id),), types=types, ends=tuple(ends), replay=True
    )


async def execution_stream(
    db: Database, principal: Principal, execution_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    await _lookup(db, principal, _EXECUTIONS, execution_id, required=True)
    return _execution_spec(principal, execution_id, types)


def _execution_spec(
    principal: Principal, execution_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    return _spec(
        principal,
        equals=(("execution_id", execution_id),),
        types=types,
        ends=(EndCondition("execution_id", execution_id, EXECUTION_TERMINAL),),
        replay=True,
    )


async def session_stream(
    db: Database, principal: Principal, session_id: uuid.UUID, types: TypeFilter | None
) -> StreamSpec:
    await _lookup(db, principal, _SESSIONS, session_id, required=False)
    return _spec(principal, equals=(("session_id", session_id),), types=types, replay=True)


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
    feature is installed, and the stream ends with it (the most specific one given)."""
    if workflow_id is not None and task_id is None and await _is_task(db, principal, workflow_id):
        # Shannon clients name the task they follow ``workflow_id``.
        task_id, workflow_id = workflow_id, None
    ends: tuple[EndCondition, ...] = ()
    if execution_id is not None:
        await _lookup(db, principal, _EXECUTIONS, execution_id, required=False)
        ends = _execution_spec(principal, execution_id, None).ends
    if run_id is not None:
        run = await _lookup(db, principal, _RUNS, run_id, required=False)
        ends = _run_spec(principal, run_id, getattr(run, "task_id", None), None).ends
    if task_id is not None:
        await _lookup(db, principal, _TASKS, task_id, required=False)
        ends = (_task_end(task_id),)
    if session_id is not None:
        await _lookup(db, principal, _SESSIONS, session_id, required=False)
    named = {
        "task_id": task_id,
        "run_id": run_id,
        "execution_id": execution_id,
        "session_id": session_id,
        "workflow_id": workflow_id,
    }
    equals = tuple((column, value) for column, value in named.items() if value is not None)
    subject = any(v is not None for v in (task_id, run_id, execution_id, session_id))
    return _spec(principal, equals=equals, types=types, ends=ends, replay=subject)


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
        return _spec(principal, present=_FEEDS[kind], types=types)
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
