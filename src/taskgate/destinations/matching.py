"""Which events a subscription wants: a type pattern, then a filter on the event's fields.

Patterns: `*` matches everything; `task.*` matches every type under `task.` (`task.completed`,
`task.output.delta`), not `task` itself; anything else matches exactly.

Filters are JSON objects matched against the event (`filter_document`): each key must
be present and match; an object matches an object recursively (a subset match); a list matches
a scalar equal to any of its items; scalars compare equal, or equal as text (ids are UUIDs in
the database and strings in JSON).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from taskgate.clock import isoformat
from taskgate.models import Event

SUBJECT_FIELDS = ("task_id", "run_id", "job_id", "execution_id", "workflow_id", "session_id")
FILTER_FIELDS = frozenset({"id", "type", *SUBJECT_FIELDS, "payload"})
MAX_FILTER_DEPTH = 8

_SEGMENT = r"[A-Za-z0-9_-]+"
_PATTERN = re.compile(rf"^(\*|{_SEGMENT}(\.{_SEGMENT})*(\.\*)?)$")


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a valid event pattern, or None."""
    if not _PATTERN.match(pattern):
        return "use '*', an event type such as 'task.completed', or a prefix such as 'task.*'"
    return None


def pattern_matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def filter_problems(event_filter: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Problems with a filter as `(field, message)`, fields named `filter.<key>`."""
    problems = [
        (f"filter.{key}", f"unknown event field (one of: {', '.join(sorted(FILTER_FIELDS))})")
        for key in event_filter
        if key not in FILTER_FIELDS
    ]
    if "payload" in event_filter and not isinstance(event_filter["payload"], Mapping):
        problems.append(("filter.payload", "must be an object"))
    if _depth(event_filter) > MAX_FILTER_DEPTH:
        problems.append(("filter", f"nests deeper than {MAX_FILTER_DEPTH} levels"))
    return problems


def filter_matches(event_filter: Mapping[str, Any] | None, document: Mapping[str, Any]) -> bool:
    if not event_filter:
        return True
    return _matches(event_filter, document)


def _matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(
            key in actual and _matches(value, actual[key]) for key, value in expected.items()
        )
    if isinstance(expected, list):
        if isinstance(actual, list):
            return expected == actual
        return any(_matches(item, actual) for item in expected)
    return _scalar_equal(expected, actual)


def _scalar_equal(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is actual
    # bool is an int in Python; True must not match 1.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if expected == actual:
        return True
    return str(expected) == str(actual)


def _depth(value: Any) -> int:
    if isinstance(value, Mapping):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def event_document(event: Event) -> dict[str, Any]:
    """The event as deliveries carry it: the events API's shape."""
    document: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "created_at": isoformat(event.created_at),
    }
    for key in SUBJECT_FIELDS:
        if key != "workflow_id":  # a filter, not shown (as in the events API)
            document[key] = _text(getattr(event, key))
    document["payload"] = event.payload or {}
    return document


def filter_document(event: Event) -> dict[str, Any]:
    """What a subscription filter is matched against: the delivered shape plus workflow_id."""
    return {**event_document(event), "workflow_id": _text(event.workflow_id)}


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None
