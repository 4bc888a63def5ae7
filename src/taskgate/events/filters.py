"""What a stream wants: the project's events that match its subject and types, plus the events
that end its subject. The same spec answers in Python (live fan-out) and in SQL (replay)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from taskgate.errors import ValidationFailed
from taskgate.events.visibility import event_family
from taskgate.events.wire import SUBJECTS, EventRecord

# Where the fan-out files a spec, per project: under a subject it names (column, id), or under
# None when it takes any of the project's events (a feed). An event is matched only against
# the specs filed under None and under the subjects it carries.
Route = tuple[str, uuid.UUID] | None

TASK_TERMINAL = frozenset({"task.completed", "task.failed", "task.cancelled", "task.timeout"})
RUN_TERMINAL = frozenset({"run.completed", "run.failed", "run.cancelled", "run.timeout"})
EXECUTION_TERMINAL = frozenset(
    {
        "execution.succeeded",
        "execution.success",
        "execution.completed",
        "execution.failed",
        "execution.cancelled",
        "execution.timeout",
    }
)

_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*(\.\*)?$|^\*$")
_MAX_TYPES = 50


@dataclass(frozen=True, slots=True)
class TypeFilter:
    """``types=a,b`` of the API: exact names, or a prefix written ``task.*``."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def parse(cls, raw: str | None) -> TypeFilter | None:
        """None when every type is wanted (no filter, or ``*``)."""
        if raw is None or not raw.strip():
            return None
        names = [part.strip() for part in raw.split(",") if part.strip()]
        if len(names) > _MAX_TYPES:
            raise ValidationFailed.field("types", f"at most {_MAX_TYPES} types")
        exact: set[str] = set()
        prefixes: list[str] = []
        for name in names:
            if len(name) > 100 or not _TYPE_PATTERN.match(name):
                raise ValidationFailed.field(
                    "types", f"{name[:100]!r} is not an event type or a prefix like task.*"
                )
            if name == "*":
                return None
            if name.endswith(".*"):
                prefixes.append(name[:-1])
            else:
                exact.add(name)
        return cls(frozenset(exact), tuple(sorted(set(prefixes))))

    def matches(self, type: str) -> bool:
        return type in self.exact or type.startswith(self.prefixes)


@dataclass(frozen=True, slots=True)
class EndCondition:
    """The subject ends when an event with ``column == value`` and one of ``types`` arrives."""

    column: str
    value: uuid.UUID
    types: frozenset[str]


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """Hashable, so the fan-out matches an event once for all streams with the same spec.
    A stream carries the events of one project (its subject's, or the request's for a feed),
    whoever caused them: who may follow it was decided when it opened. Events of no project
    (the system's) reach no stream."""

    project_id: uuid.UUID
    equals: tuple[tuple[str, uuid.UUID], ...] = ()
    present: tuple[str, ...] = ()
    types: TypeFilter | None = None
    ends: tuple[EndCondition, ...] = ()
    # A subject's stream replays its history when the client names no last event; an open
    # feed (all my events, all my tasks) starts at now instead.
    replay: bool = False
    # The scope families of the events the principal may read (``visibility``); None: all.
    readable: frozenset[str] | None = None

    def _elsewhere(self, event: EventRecord) -> bool:
        return event.project_id != self.project_id

    def matches(self, event: EventRecord) -> bool:
        if self._elsewhere(event):
            return False
        if self.readable is not None and event_family(event) not in self.readable:
            return False
        for column, value in self.equals:
            if getattr(event, column) != value:
                return False
        for column in self.present:
            if getattr(event, column) is None:
                return False
        return self.types is None or self.types.matches(event.type)

    def end_reason(self, event: EventRecord) -> str | None:
        if self._elsewhere(event):
            return None
        for end in self.ends:
            if event.type in end.types and getattr(event, end.column) == end.value:
                return event.type
        return None

    def wants(self, event: EventRecord) -> bool:
        return self.matches(event) or self.end_reason(event) is not None

    def routes(self) -> tuple[Route, ...]:
        """Every event this spec wants carries one of these (its subject, or what ends it)."""
        if not self.equals:
            return (None,)
        return tuple(dict.fromkeys((self.equals[0], *((e.column, e.value) for e in self.ends))))

    def cut(self, events: list[EventRecord]) -> tuple[list[EventRecord], str | None]:
        """The events to send, up to the one that ends the subject (sent if it matches),
        and the reason it ended, if it did."""
        sent: list[EventRecord] = []
        for event in events:
            if self.matches(event):
                sent.append(event)
            reason = self.end_reason(event)
            if reason is not None:
                return sent, reason
        return sent, None


def event_routes(event: EventRecord) -> list[Route]:
    """The routes under which specs that may want ``event`` are filed."""
    routes: list[Route] = [None]
    for column in SUBJECTS:
        value = getattr(event, column)
        if value is not None:
            routes.append((column, value))
    return routes
