"""Fixtures for schedule tests: two users, a clock the test moves, and a scheduler on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI

from taskgate.schedules.clock import ManualClock
from taskgate.schedules.scheduler import Scheduler

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(app: FastAPI) -> Iterator[ManualClock]:
    """The time the API and the scheduler both see; moved only by the test."""
    manual = ManualClock(START)
    app.state.schedule_clock = manual
    yield manual
    del app.state.schedule_clock


@pytest.fixture
def scheduler(app: FastAPI, clock: ManualClock) -> Scheduler:
    return Scheduler(app.state.db, app.state.settings, clock)
