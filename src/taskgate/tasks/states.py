"""The task state machine: the table of legal moves and the one function that makes them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from taskgate.clock import utcnow
from taskgate.errors import Conflict
from taskgate.models import Task


class TaskStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    WAITING_APPROVAL = "WAITING_APPROVAL"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"


S = TaskStatus
FINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT})

# Every legal move. RUNNING -> QUEUED is a retry (a model error worth another attempt);
# QUEUED -> FAILED covers work that cannot start (no model configured, the queue gave up).
LEGAL: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.PAUSED, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset(
        {S.COMPLETED, S.FAILED, S.CANCELLED, S.TIMEOUT, S.PAUSED, S.WAITING_APPROVAL, S.QUEUED}
    ),
    S.PAUSED: frozenset({S.QUEUED, S.CANCELLED, S.FAILED}),
    S.WAITING_APPROVAL: frozenset({S.QUEUED, S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMEOUT: frozenset(),
}

# The event each move announces; a move back to QUEUED is a resume or a retry.
EVENT_OF: dict[TaskStatus, str] = {
    S.RUNNING: "task.started",
    S.PAUSED: "task.paused",
    S.WAITING_APPROVAL: "task.waiting_approval",
    S.COMPLETED: "task.completed",
    S.FAILED: "task.failed",
    S.CANCELLED: "task.cancelled",
    S.TIMEOUT: "task.timeout",
}

_VERBS = {
    S.RUNNING: "start",
    S.PAUSED: "pause",
    S.WAITING_APPROVAL: "suspend",
    S.COMPLETED: "complete",
    S.FAILED: "fail",
    S.CANCELLED: "cancel",
    S.TIMEOUT: "time out",
    S.QUEUED: "queue",
}


def can_move(current: str, to: TaskStatus) -> bool:
    return to in LEGAL[TaskStatus(current)]


def is_final(status: str) -> bool:
    return status in FINAL


def transition(task: Task, to: TaskStatus, *, at: datetime | None = None) -> TaskStatus:
    """Move ``task`` to ``to`` and stamp its timestamps; an illegal move is a Conflict (409).

    Returns the status it left, so callers can tell a resume from a retry.
    """
    current = TaskStatus(task.status)
    if to not in LEGAL[current]:
        raise Conflict(f"Cannot {_VERBS[to]} a task that is {current.value}.")
    now = at or utcnow()
    task.status = to.value
    task.updated_at = now
    if to is S.RUNNING:
        task.started_at = task.started_at or now
        task.paused_at = None
    elif to is S.PAUSED:
        task.paused_at = now
        task.pause_requested_at = None
    elif to is S.QUEUED:
        task.paused_at = None
        task.pause_requested_at = None
    if to in FINAL:
        task.completed_at = now
        task.pause_requested_at = None
    return current
