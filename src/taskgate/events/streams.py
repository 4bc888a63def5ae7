"""Replay, then follow: the one iterator behind SSE and WebSocket streams.

Order of operations is what makes it gap-free: subscribe to the fan-out first (from then on
every event past its cursor reaches our inbox), replay the table up to that cursor, then
drain the inbox, skipping ids already sent. No database session is held between reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType

from taskgate.db.session import Database
from taskgate.events import repository
from taskgate.events.bus import EventBus
from taskgate.events.fanout import EventFanout
from taskgate.events.filters import StreamSpec
from taskgate.events.subscribers import Sink, Subscriber
from taskgate.events.wire import EventRecord


@dataclass(slots=True)
class Delivery:
    """What to send now: events in id order, maybe a keep-alive, maybe the end."""

    events: list[EventRecord] = field(default_factory=list)
    ping: bool = False
    done: str | None = None


class EventStream:
    """``async with EventStream(...) as stream: async for delivery in stream.deliveries()``.

    ``after`` is the client's last seen id (resume); None starts at the beginning of a
    subject's history (``spec.replay``) or at now for an open feed."""

    def __init__(
        self, bus: EventBus, spec: StreamSpec, after: int | None, *, ping: bool = True
    ) -> None:
        self.db: Database = bus.db
        self.bus = bus
        self.fanout: EventFanout = bus.fanout
        self.spec = spec
        self.after = after
        self.page = bus.settings.streams.backlog_page
        self._ping = ping
        self._subscriber: Subscriber | None = None
        self._start = 0
        self._closed = False

    async def __aenter__(self) -> EventStream:
        self._subscriber = self.fanout.subscribe(self.spec, ping=self._ping)
        # Read in the same step as subscribing. An open feed starts at the newest commit it
        # has heard of, even if the fan-out has yet to hand that one out.
        self._start = max(self.fanout.cursor, self.bus.latest_id)
        if self._closed:
            self._subscriber.close()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._subscriber is not None:
            self.fanout.unsubscribe(self._subscriber)

    def close(self) -> None:
        """Make ``deliveries`` end (the client went away, or is too slow)."""
        self._closed = True
        if self._subscriber is not None:
            self._subscriber.close()

    def attach(self, sink: Sink) -> None:
        """Let the fan-out write live events straight to the connection while idle."""
        if self._subscriber is not None:
            self._subscriber.sink = sink

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Until the subject ends or the stream is closed. When the end was written through
        the sink, the iterator just stops (no ``done`` delivery)."""
        subscriber = self._subscriber
        assert subscriber is not None, "use the stream as an async context manager"
        replay = self.after is not None or self.spec.replay
        subscriber.last = (self.after or 0) if replay else self._start
        if self.after and self.spec.ends:
            async with self.db.transaction(write=False) as session:
                ended = await repository.ending_type(session, self.spec, upto=self.after)
            if ended is not None:
                yield Delivery(done=ended)
                return
        while not subscriber.closed:
            if replay:
                replay = False
                subscriber.reset()
                cap = self.fanout.cursor
                async for page in self._table(subscriber.last, cap):
                    if subscriber.closed:
                        return
                    delivery = self._cut(page)
                    subscriber.last = page[-1].id
                    if delivery.events or delivery.done:
                        yield delivery
                    if delivery.done:
                        return
                subscriber.last = max(subscriber.last, cap)
                continue
            await subscriber.wait()
            if subscriber.closed or subscriber.finished is not None:
                return
            if subscriber.overflowed:
                replay = True
                continue
            fresh = [event for event in subscriber.take() if event.id > subscriber.last]
            delivery = self._cut(fresh)
            if fresh:
                subscriber.last = fresh[-1].id
            if subscriber.ping:
                subscriber.ping = False
                delivery.ping = True
            if delivery.events or delivery.ping or delivery.done:
                yield delivery
            if delivery.done:
                return

    async def _table(self, after: int, upto: int) -> AsyncIterator[list[EventRecord]]:
        while after < upto:
            async with self.db.transaction(write=False) as session:
                page = await repository.backlog(
                    session, self.spec, after=after, upto=upto, limit=self.page
                )
            if not page:
                return
            yield page
            if len(page) < self.page:
                return
            after = page[-1].id

    def _cut(self, events: list[EventRecord]) -> Delivery:
        sent, done = self.spec.cut(events)
        return Delivery(sent, done=done)
