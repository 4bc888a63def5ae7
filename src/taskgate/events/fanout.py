"""One reader per process follows the events table and hands each committed event to every
local stream that wants it: one query per notification, whatever the number of streams.

Ids are drawn at insert, so on PostgreSQL id 11 can commit before id 10. The reader keeps a
watermark (``cursor``): every id at or below it has committed and been handed out, or is
known never to commit. It does not move past a missing id until that id shows up, or every
transaction that could still insert it has ended (PostgreSQL), or ``gap_grace_seconds``
passed. Streams therefore see ids in increasing order, and an id below what a client has
seen never turns up later: resuming from ``Last-Event-ID`` loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from taskgate.db.session import Database
from taskgate.events import repository
from taskgate.events.filters import Route, StreamSpec, event_routes
from taskgate.events.subscribers import Batch, Subscriber
from taskgate.events.wire import EventRecord
from taskgate.settings import StreamSettings

if TYPE_CHECKING:
    from taskgate.events.bus import Notifications

log = structlog.get_logger()

_BATCH = 1000
# A jump this large is a sequence reset or restore, not transactions in flight.
_HUGE_GAP = 10_000
_RECHECK_FIRST, _RECHECK_MAX = 0.02, 0.25


class EventFanout:
    def __init__(
        self,
        db: Database,
        settings: StreamSettings,
        notifications: Notifications,
    ) -> None:
        self.db = db
        self.settings = settings
        self.notifications = notifications
        self.cursor = 0
        self._probe_writers = db.dialect == "postgresql"
        # gap id → (first seen, loop time; transactions able to insert it then, if known)
        self._gaps: dict[int, tuple[float, frozenset[str] | None]] = {}
        self._members: dict[StreamSpec, set[Subscriber]] = {}
        # project → route → specs: an event meets only the specs of its project filed under
        # the subjects it carries, however many streams follow other subjects.
        self._routes: dict[object, dict[Route, set[StreamSpec]]] = {}
        self._count = 0
        self._read_at = float("-inf")  # loop time of the last read
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def subscriber_count(self) -> int:
        return self._count

    @property
    def open_gaps(self) -> int:
        """Missing ids the reader is waiting on before it hands out later ones."""
        return len(self._gaps)

    async def start(self) -> None:
        async with self.db.transaction(write=False) as session:
            self.cursor = await repository.max_event_id(session)
        self._tasks = [
            asyncio.create_task(self._follow(), name="event-fanout"),
            asyncio.create_task(self._ping(), name="event-fanout-ping"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for members in list(self._members.values()):
            for subscriber in list(members):
                subscriber.close()

    def subscribe(self, spec: StreamSpec, *, ping: bool) -> Subscriber:
        """Register now; every event past ``self.cursor`` from this moment reaches the inbox."""
        subscriber = Subscriber(spec, self.settings.subscriber_queue, ping)
        members = self._members.get(spec)
        if not self._members:
            self.notifications.put(None)  # catch up now: reads waited while nobody listened
        if members is None:
            members = self._members[spec] = set()
            routes = self._routes.setdefault(spec.project_id, {})
            for route in spec.routes():
                routes.setdefault(route, set()).add(spec)
        members.add(subscriber)
        self._count += 1
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        spec = subscriber.spec
        members = self._members.get(spec)
        if members is None or subscriber not in members:
            return
        members.remove(subscriber)
        self._count -= 1
        if members:
            return
        del self._members[spec]
        routes = self._routes[spec.project_id]
        for route in spec.routes():
            filed = routes[route]
            filed.discard(spec)
            if not filed:
                del routes[route]
        if not routes:
            del self._routes[spec.project_id]

    async def _follow(self) -> None:
        recheck = _RECHECK_FIRST
        failures = 0
        while True:
            timeout = recheck if self._gaps else self.settings.poll_seconds
            notified, hint = await self.notifications.wait(timeout)
            if notified and hint is not None and hint <= self.cursor and not self._gaps:
                continue  # our own echo, or news we already read
            loop_time = asyncio.get_running_loop().time()
            if notified and not self._members and loop_time < self._read_at + timeout:
                # No stream to hand events to: keep the cursor near the head, but read at most
                # every poll_seconds rather than after every commit. A first subscriber asks
                # for a read at once (``subscribe``).
                continue
            self._read_at = loop_time
            try:
                await self._advance()
                failures = 0
            except Exception:
                failures += 1
                log.exception("event_fanout_read_failed", failures=failures)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
            recheck = min(recheck * 2, _RECHECK_MAX) if self._gaps else _RECHECK_FIRST

    async def _advance(self) -> None:
        while True:
            full = bool(self._members)
            records: list[EventRecord] | None = None
            async with self.db.transaction(write=False) as session:
                writers_now = None
                if self._probe_writers and self._gaps:
                    writers_now = await repository.open_writers(session)
                if full:
                    records = await repository.events_after(session, self.cursor, _BATCH)
                    ids = [record.id for record in records]
                else:
                    ids = await repository.ids_after(session, self.cursor, _BATCH)
                settled, new_gaps = self._settle(ids, writers_now)
                if new_gaps and self._probe_writers:
                    writers = await repository.open_writers(session)
                    for gap in new_gaps:
                        self._gaps[gap] = (self._gaps[gap][0], writers)
            if records is None and self._members:
                continue  # a stream subscribed while we read ids only: read its events
            if settled:
                # No await from here to the dispatch: a stream subscribing meanwhile either
                # sees the old cursor and gets these events, or the new one and replays them.
                self.cursor = ids[settled - 1]
                if records is not None:
                    self._dispatch(records[:settled])
            if len(ids) < _BATCH or settled < len(ids):
                return

    def _settle(self, ids: list[int], writers_now: frozenset[str] | None) -> tuple[int, list[int]]:
        """How many of ``ids`` (ascending, all past the cursor) may be handed out now."""
        now = asyncio.get_running_loop().time()
        expect = self.cursor + 1
        settled = 0
        new_gaps: list[int] = []
        for event_id in ids:
            if event_id > expect and not self._gap_closed(
                expect, event_id, now, writers_now, new_gaps
            ):
                break
            settled += 1
            expect = event_id + 1
        if settled:
            upto = ids[settled - 1]
            self._gaps = {gap: state for gap, state in self._gaps.items() if gap > upto}
        return settled, new_gaps

    def _gap_closed(
        self,
        low: int,
        high: int,
        now: float,
        writers_now: frozenset[str] | None,
        new_gaps: list[int],
    ) -> bool:
        if high - low > _HUGE_GAP:
            log.warning("event_id_jump", after=low - 1, next=high)
            return True
        closed = True
        for gap in range(low, high):
            state = self._gaps.get(gap)
            if state is None:
                self._gaps[gap] = (now, None)
                new_gaps.append(gap)
                closed = False
                continue
            first_seen, writers = state
            if writers is not None and writers_now is not None and writers.isdisjoint(writers_now):
                continue  # every transaction that could hold it has ended: rolled back
            if now - first_seen >= self.settings.gap_grace_seconds:
                log.warning("event_id_gap_given_up", event_id=gap)
                continue
            closed = False
        return closed

    def _dispatch(self, records: list[EventRecord]) -> None:
        wanted: dict[StreamSpec, list[EventRecord]] = {}
        for record in records:
            routes = self._routes.get(record.project_id)
            if routes is None:
                continue
            for route in event_routes(record):
                for spec in routes.get(route, ()):
                    if spec.wants(record):
                        taken = wanted.setdefault(spec, [])
                        if not taken or taken[-1] is not record:  # filed under two routes
                            taken.append(record)
        woken: list[Subscriber] = []
        for spec, events in wanted.items():
            batch = Batch(spec, events)
            for subscriber in self._members[spec]:
                if subscriber.offer(batch):
                    woken.append(subscriber)
        for subscriber in woken:
            subscriber.wake()

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_seconds)
            for members in list(self._members.values()):
                for subscriber in list(members):
                    if subscriber.wants_ping:
                        subscriber.offer_ping()
