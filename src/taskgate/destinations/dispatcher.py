"""The dispatcher: committed events → deliveries → `delivery.send` jobs, exactly once each.

It scans the event log from a stored cursor, matches each event against the active
subscriptions of its project (a subscription is the project's, made by its admins, and
routes everyone's events there), and in one transaction inserts the deliveries (a delivery is
unique per subscription and event, so a rescan never duplicates one) and enqueues one job
per new delivery. Only one dispatcher scans at a time across processes (see
`repository.lock_cursor`). It wakes on the "events" commit signal of its own process, and
polls about every second for events committed elsewhere.

Why not simply "events after the cursor": PostgreSQL hands out ids when rows are inserted
but makes them visible when their transaction commits, so id 10 can appear after id 11 was
scanned. The dispatcher therefore remembers the ids missing below the highest one it has
scanned (holes) and looks for them again at every scan, until they appear or the
lookback window (`delivery.dispatch_lookback_seconds`, counted from the creation of the
event after the hole) has passed: an id that stays missing that long belonged to a
transaction that rolled back. The stored cursor only advances to just below the oldest
hole, so a restarted dispatcher rescans what it may have missed (harmlessly).

Most installations have no subscription at all, and every commit wakes the dispatcher: so
each scan starts with one cheap read (the newest event id, and whether any subscription is
active) and, with none active, passes over the new events without reading them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.destinations import repository as repo
from taskgate.destinations.jobs import DELIVERY_KIND, MAX_JOB_ATTEMPTS
from taskgate.destinations.matching import filter_document, filter_matches, pattern_matches
from taskgate.events.bus import EventBus, Notifications
from taskgate.events.outbox import EVENTS_COMMITTED
from taskgate.ids import new_id
from taskgate.models import Event, Subscription
from taskgate.runtime.queue import enqueue
from taskgate.settings import Settings

log = structlog.get_logger()

MAX_HOLES = 10_000


@dataclass
class ScanState:
    """This process's knowledge above the stored cursor."""

    high: int = 0  # every id up to here was scanned, except the holes
    holes: dict[int, datetime] = field(default_factory=dict)  # id → when the next id was made

    def sync(self, stored: int) -> None:
        """Adopt progress another dispatcher saved while this one was not scanning."""
        if stored > self.high:
            self.high = stored
        for hole in [h for h in self.holes if h <= stored]:
            del self.holes[hole]

    def advance(self, fresh: list[Event]) -> None:
        for event in fresh:
            for missing in range(self.high + 1, event.id):
                self.holes[missing] = event.created_at
            self.high = max(self.high, event.id)

    def settle(self, filled: list[Event], now: datetime, lookback: float) -> None:
        for event in filled:
            self.holes.pop(event.id, None)
        expired = now - timedelta(seconds=lookback)
        for hole in [h for h, seen in self.holes.items() if seen < expired]:
            del self.holes[hole]
        if len(self.holes) > MAX_HOLES:
            # A huge gap (a bulk insert rolled back): wait only for the newest ones.
            for hole in sorted(self.holes)[: len(self.holes) - MAX_HOLES]:
                del self.holes[hole]

    @property
    def low(self) -> int:
        """Every id up to here is settled: the cursor worth storing."""
        return min(self.holes) - 1 if self.holes else self.high


def matching_subscriptions(
    event: Event, document: dict[str, Any], subscriptions: list[Subscription]
) -> list[Subscription]:
    return [
        s
        for s in subscriptions
        if (
            s.project_id == event.project_id
            if event.project_id is not None
            else s.owner_id == event.owner_id
        )
        and pattern_matches(s.event_pattern, event.type)
        and filter_matches(s.filter, document)
    ]


async def dispatch_events(session: AsyncSession, events: list[Event]) -> list[tuple[Any, Any]]:
    """Deliveries and jobs for these events; returns the new (delivery_id, subscription_id)."""
    owned = [e for e in events if e.owner_id is not None or e.project_id is not None]
    projects = {e.project_id for e in owned if e.project_id is not None}
    # Events written before projects carry none: they match their owner's subscriptions.
    legacy = {e.owner_id for e in owned if e.project_id is None and e.owner_id is not None}
    subscriptions = await repo.active_subscriptions(session, projects, legacy)
    if not subscriptions:
        return []
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for event in owned:
        document = filter_document(event)
        for subscription in matching_subscriptions(event, document, subscriptions):
            rows.append(
                {
                    "id": new_id(),
                    "subscription_id": subscription.id,
                    "destination_id": subscription.destination_id,
                    "event_id": event.id,
                    "event_type": event.type,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
    inserted = await repo.insert_deliveries(session, rows)
    for delivery_id, subscription_id in inserted:
        # One key per subscription: its deliveries leave one at a time, in event order.
        await enqueue(
            session,
            DELIVERY_KIND,
            {"delivery_id": str(delivery_id)},
            max_attempts=MAX_JOB_ATTEMPTS,
            concurrency_key=f"sub:{subscription_id}",
            job_id=delivery_id,
        )
    return inserted


class Dispatcher:
    """A component: runs the scan loop in any process that runs a worker."""

    name = "dispatcher"

    def __init__(
        self, *, batch_size: int = 500, poll_seconds: float = 1.0, linger_seconds: float = 0.01
    ) -> None:
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.linger_seconds = linger_seconds
        self.state = ScanState()
        self._initialized = False
        self._saved = 0  # the cursor as this dispatcher last stored it
        self._save_due = 0.0  # (monotonic) when an idle dispatcher may store it next
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._notifications: Notifications | None = None
        self._db: Database | None = None
        self._settings: Settings | None = None

    async def start(self, app: FastAPI) -> None:
        await self.open(app.state.db, app.state.settings, getattr(app.state, "bus", None))

    async def open(self, db: Database, settings: Settings, bus: EventBus | None = None) -> None:
        """Start scanning without an app (a standalone worker process)."""
        self._db = db
        self._settings = settings
        db.listen(EVENTS_COMMITTED, self._on_events)
        # The bus also carries commits made by other processes (when it listens).
        if bus is not None:
            self._notifications = bus.subscribe()
            self._tasks.append(asyncio.create_task(self._follow(self._notifications)))
        self._tasks.append(asyncio.create_task(self._run(), name="dispatcher"))

    async def stop(self) -> None:
        if self._notifications is not None:
            self._notifications.close()
            self._notifications = None
        if self._db is not None:
            listeners = self._db.listeners.get(EVENTS_COMMITTED, [])
            if self._on_events in listeners:
                listeners.remove(self._on_events)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _on_events(self, _ids: list[Any]) -> None:
        self._wake.set()

    async def _follow(self, notifications: Notifications) -> None:
        async for _ in notifications:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                more = await self.run_once() >= self.batch_size
            except Exception:
                log.exception("dispatch_failed")
                more = False
            if more:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            except TimeoutError:
                continue
            # A commit woke us: let the committer carry on first (a worker starting the task
            # it just marked running) and let the commits of a burst gather for one scan.
            await asyncio.sleep(self.linger_seconds)

    async def run_once(self) -> int:
        """One scan; returns how many new events it read (0 when another dispatcher holds
        the cursor)."""
        assert self._db is not None
        assert self._settings is not None
        lookback = self._settings.delivery.dispatch_lookback_seconds
        # Idle most of the time: look before taking the write lock (SQLite) or row lock.
        async with self._db.transaction(write=False) as session:
            newest, subscribed = await repo.scan_hint(session)
        if not subscribed:
            await self._pass_over(newest)
            return 0
        up_to_date = newest is None or newest <= self.state.high
        if self._initialized and not self.state.holes and up_to_date:
            return 0
        async with self._db.transaction() as session:
            stored = await repo.lock_cursor(session)
            if stored is None:
                return 0
            # Work on a copy: the new state is adopted only if this transaction commits.
            known = self.state if self._initialized else ScanState(high=stored)
            state = ScanState(known.high, dict(known.holes))
            state.sync(stored)
            filled = await repo.events_by_ids(session, list(state.holes))
            fresh = await repo.events_after(session, state.high, self.batch_size)
            state.advance(fresh)
            state.settle(filled, utcnow(), lookback)
            inserted = await dispatch_events(session, filled + fresh)
            if state.low != stored:
                await repo.save_cursor(session, state.low)
        # Adopt the new state only once it is committed.
        self.state, self._initialized = state, True
        self._saved = state.low
        if inserted:
            log.debug("deliveries_dispatched", count=len(inserted))
        return len(fresh)

    async def _pass_over(self, newest: int | None) -> None:
        """No subscription could receive an event: skip the new ones unread. They were all
        written before a subscription that appears from now on (the hint read them in one
        snapshot), so none of them is owed to it. The stored cursor follows at most once
        per poll interval, so that a dispatcher starting later does not read them either."""
        assert self._db is not None
        high = max(self.state.high, newest or 0)
        if high > self.state.high or self.state.holes:
            self.state = ScanState(high=high)
        self._initialized = True
        now = time.monotonic()
        if self.state.high <= self._saved or now < self._save_due:
            return
        self._save_due = now + self.poll_seconds
        async with self._db.transaction() as session:
            stored = await repo.lock_cursor(session)
            if stored is None:  # another dispatcher is scanning: it moves the cursor
                return
            if stored < self.state.high:
                await repo.save_cursor(session, self.state.high)
        self._saved = max(stored, self.state.high)
