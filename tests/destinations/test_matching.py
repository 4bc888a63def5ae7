"""Event patterns and filters, and how the dispatcher tracks ids that commit out of order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskgate.destinations.dispatcher import ScanState
from taskgate.destinations.matching import (
    filter_matches,
    filter_problems,
    pattern_matches,
    pattern_problem,
)
from taskgate.models import Event


@pytest.mark.parametrize(
    ("pattern", "event_type", "matches"),
    [
        ("*", "task.completed", True),
        ("*", "destination.disabled", True),
        ("task.*", "task.completed", True),
        ("task.*", "task.output.delta", True),
        ("task.*", "task", False),
        ("task.*", "taskforce.created", False),
        ("task.output.*", "task.output.delta", True),
        ("task.output.*", "task.completed", False),
        ("task.completed", "task.completed", True),
        ("task.completed", "task.completed.late", False),
        ("task.completed", "task.failed", False),
    ],
)
def test_patterns(pattern: str, event_type: str, matches: bool) -> None:
    assert pattern_problem(pattern) is None
    assert pattern_matches(pattern, event_type) is matches


@pytest.mark.parametrize("pattern", ["", "task.", ".task", "task.*.x", "ta sk", "**", "task*"])
def test_invalid_patterns(pattern: str) -> None:
    assert pattern_problem(pattern) is not None


EVENT: dict[str, Any] = {
    "id": 7,
    "type": "task.failed",
    "task_id": "0192f0c4-0000-7000-8000-000000000001",
    "session_id": None,
    "payload": {"status": "FAILED", "attempt": 2, "final": True, "meta": {"labels": ["a"]}},
}


@pytest.mark.parametrize(
    ("event_filter", "matches"),
    [
        (None, True),
        ({}, True),
        ({"task_id": "0192f0c4-0000-7000-8000-000000000001"}, True),
        ({"task_id": "0192f0c4-0000-7000-8000-000000000002"}, False),
        ({"payload": {"status": "FAILED"}}, True),
        ({"payload": {"status": "COMPLETED"}}, False),
        ({"payload": {"status": ["TIMEOUT", "FAILED"]}}, True),
        ({"payload": {"missing": None}}, False),
        ({"session_id": None}, True),
        ({"payload": {"attempt": 2, "final": True}}, True),
        ({"payload": {"final": 1}}, False),  # a boolean is not a number
        ({"payload": {"attempt": "2"}}, True),  # ids and numbers also match as text
        ({"payload": {"meta": {"labels": ["a"]}}}, True),
        ({"payload": {"meta": {"labels": ["b"]}}}, False),
        ({"type": "task.failed", "id": 7}, True),
    ],
)
def test_filters(event_filter: dict[str, Any] | None, matches: bool) -> None:
    assert filter_matches(event_filter, EVENT) is matches


def test_filter_problems_name_the_fields() -> None:
    assert filter_problems({"task_id": "x", "payload": {"a": 1}}) == []
    assert [f for f, _ in filter_problems({"owner_id": "x", "payload": 3})] == [
        "filter.owner_id",
        "filter.payload",
    ]
    deep: dict[str, Any] = {"payload": {}}
    level = deep["payload"]
    for _ in range(10):
        level["x"] = {}
        level = level["x"]
    assert [f for f, _ in filter_problems(deep)] == ["filter"]


T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def events(*ids: int, at: datetime = T0) -> list[Event]:
    return [Event(id=i, type="x", created_at=at) for i in ids]


def test_scan_state_waits_for_gaps_then_gives_up_after_the_lookback() -> None:
    state = ScanState(high=10)
    state.advance(events(11, 13, 14))
    assert (state.high, set(state.holes), state.low) == (14, {12}, 11)

    state.settle([], now=T0 + timedelta(seconds=1), lookback=5)
    assert state.low == 11  # 12 may still commit
    state.advance(events(16))
    state.settle(events(12), now=T0 + timedelta(seconds=2), lookback=5)
    assert (set(state.holes), state.low) == ({15}, 14)

    state.settle([], now=T0 + timedelta(seconds=6), lookback=5)
    assert (state.holes, state.low) == ({}, 16)  # 15 rolled back


def test_scan_state_adopts_what_another_dispatcher_saved() -> None:
    state = ScanState(high=10)
    state.advance(events(12, 20))
    state.sync(15)
    assert (state.high, set(state.holes)) == (20, set(range(16, 20)))
    state.sync(30)
    assert (state.high, state.holes, state.low) == (30, {}, 30)
