"""When a stored schedule is next due: its next occurrence, jitter, and the claim time."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from taskgate.models import Schedule
from taskgate.schedules.definition import timing_of
from taskgate.schedules.timing import next_fire

ACTIVE, PAUSED, COMPLETED = "ACTIVE", "PAUSED", "COMPLETED"
# Committed schedule changes are announced here, so an in-process scheduler wakes at once.
SCHEDULES_CHANGED = "schedules"
_JUST_BEFORE = timedelta(microseconds=1)


def jitter(schedule_id: uuid.UUID, occurrence: datetime, jitter_seconds: int) -> timedelta:
    """A fixed offset in [0, jitter_seconds] for this occurrence: every scheduler process
    (and every retry) computes the same one, so jitter never causes a second firing."""
    if jitter_seconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(f"{schedule_id}|{occurrence.isoformat()}".encode()).digest()
    millis = int.from_bytes(digest[:8], "big") % (jitter_seconds * 1000 + 1)
    return timedelta(milliseconds=millis)


def fires_at(s: Schedule, occurrence: datetime) -> datetime:
    return occurrence + jitter(s.id, occurrence, s.jitter_seconds)


def can_fire(s: Schedule) -> bool:
    return s.status == ACTIVE and s.enabled


def refresh_due(s: Schedule, now: datetime, retry_seconds: float) -> None:
    """Set ``due_at``: the next occurrence plus its jitter, or soon while an occurrence is
    buffered; NULL when the schedule cannot fire, which keeps it out of the claim index."""
    if not can_fire(s):
        s.due_at = None
        return
    candidates = []
    if s.next_run_at is not None:
        candidates.append(fires_at(s, s.next_run_at))
    if s.buffered_for is not None:
        candidates.append(now + timedelta(seconds=retry_seconds))
    s.due_at = min(candidates) if candidates else None


def reschedule(s: Schedule, now: datetime) -> None:
    """Point ``next_run_at`` at the first occurrence at or after ``now`` (after a timing
    change or a resume: time spent paused is not an outage to catch up on)."""
    s.next_run_at = next_fire(timing_of(s), now - _JUST_BEFORE) if can_fire(s) else None
