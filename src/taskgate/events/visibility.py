"""Which of a project's events a principal may read through a stream: exactly what the list
endpoints would show it. ``GET /events`` (``event:read``, scope ``events:read``) lists every
event of the project; an event about a task, run or job is also listed under its task
(``tasks:read``), one about an execution under it (``executions:read``), and so on. A stream
applies the same rule to each event, live and on replay, whatever channel or type filter the
client asked for. Which project a stream may follow at all is the seam's answer
(taskgate.governance.access, through ``subjects``)."""

from __future__ import annotations

from taskgate.auth.principal import Principal
from taskgate.events.wire import EventRecord

# The resource an event is about, by the first subject column it carries, named by its scope
# family; an event about none of them is only in the project's event list.
SUBJECT_FAMILIES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("task_id", "run_id", "job_id"), "tasks"),
    (("execution_id",), "executions"),
    (("workflow_id",), "workflows"),
    (("session_id",), "sessions"),
)
EVERY_EVENT = "events"
_FAMILIES = tuple(family for _, family in SUBJECT_FAMILIES)
# The permission that reads a family's resources, to ask the seam whether a principal that
# may read only those sees the stream's project at all.
FAMILY_PERMISSIONS = {
    EVERY_EVENT: "event:read",
    "tasks": "task:read",
    "executions": "execution:read",
    "workflows": "workflow:read",
}


def event_family(event: EventRecord) -> str:
    for columns, family in SUBJECT_FAMILIES:
        if any(getattr(event, column) is not None for column in columns):
            return family
    return EVERY_EVENT


def readable_families(principal: Principal) -> frozenset[str] | None:
    """None when the principal may read every event of the project; else the families it
    may (empty: none, which the seam refuses as it refuses the event list)."""
    if principal.has_scope(f"{EVERY_EVENT}:read"):
        return None
    return frozenset(f for f in _FAMILIES if principal.has_scope(f"{f}:read"))


def reading_permission(readable: frozenset[str] | None) -> str:
    """The permission to ask for a stream that shows the ``readable`` families."""
    if readable is None:
        return FAMILY_PERMISSIONS[EVERY_EVENT]
    for family in sorted(readable):
        if family in FAMILY_PERMISSIONS:
            return FAMILY_PERMISSIONS[family]
    return FAMILY_PERMISSIONS[EVERY_EVENT]
