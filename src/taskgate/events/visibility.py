"""Which of its owner's events a principal may read through a stream: exactly what the list
endpoints would show it. ``GET /events`` (scope ``events:read``) lists every event of the
owner; an event about a task, run or job is also listed under its task (``tasks:read``), one
about an execution under it (``executions:read``), and so on. A stream applies the same rule
to each event, live and on replay, whatever channel or type filter the client asked for."""

from __future__ import annotations

from taskgate.auth.principal import Principal
from taskgate.errors import Forbidden
from taskgate.events.wire import EventRecord

# The resource an event is about, by the first subject column it carries, named by its scope
# family; an event about none of them is only in the owner's event list.
SUBJECT_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("task_id", "run_id", "job_id"), "tasks"),
    (("execution_id",), "executions"),
    (("workflow_id",), "workflows"),
    (("session_id",), "sessions"),
)
EVERY_EVENT = "events"
_FAMILIES = tuple(family for _, family in SUBJECT_FAMILIES)


def event_family(event: EventRecord) -> str:
    for columns, family in SUBJECT_FAMILIES:
        if any(getattr(event, column) is not None for column in columns):
            return family
    return EVERY_EVENT


def readable_families(principal: Principal) -> frozenset[str] | None:
    """None when the principal may read every event of its owner; else the families it may.
    A principal that may read none gets the 403 the event list would answer."""
    if principal.has_scope(f"{EVERY_EVENT}:read"):
        return None
    families = frozenset(f for f in _FAMILIES if principal.has_scope(f"{f}:read"))
    if not families:
        raise Forbidden(f"This API key lacks the scope '{EVERY_EVENT}:read'.")
    return families
