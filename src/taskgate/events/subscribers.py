"""A stream's end of the fan-out: its bounded inbox, and the batches handed to it."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from taskgate.events.filters import StreamSpec
from taskgate.events.wire import SSE_PING, EventRecord, sse_done

# Writes bytes straight to the client's connection; False when it cannot right now.
Sink = Callable[[bytes], bool]


class Batch:
    """What one dispatch hands to every stream of one spec: matched once, encoded once."""

    __slots__ = ("_framed", "done", "events", "first_id", "last_id", "wanted")

    def __init__(self, spec: StreamSpec, wanted: list[EventRecord]) -> None:
        self.wanted = wanted
        self.first_id = wanted[0].id
        self.last_id = wanted[-1].id
        self.events, self.done = spec.cut(wanted)
        self._framed: bytes | None = None

    @property
    def framed(self) -> bytes:
        """The SSE frames as one HTTP/1.1 chunk."""
        if self._framed is None:
            body = b"".join(event.sse for event in self.events)
            if self.done is not None:
                body += sse_done(self.done)
            self._framed = b"%x\r\n%b\r\n" % (len(body), body)
        return self._framed


_PING_CHUNK = b"%x\r\n%b\r\n" % (len(SSE_PING), SSE_PING)


class Subscriber:
    """One stream's inbox. Bounded: a stream that falls behind drops its inbox and re-reads
    from the table, so a slow client costs the process no more than ``limit`` references.

    While its stream is parked with nothing pending, a subscriber with a ``sink`` takes
    events by having them written straight to its connection, with no task switch: at
    thousands of streams that is most of the cost of a delivery."""

    __slots__ = (
        "_waiter",
        "closed",
        "direct",
        "finished",
        "last",
        "limit",
        "overflowed",
        "ping",
        "queue",
        "sink",
        "spec",
        "wants_ping",
    )

    def __init__(self, spec: StreamSpec, limit: int, wants_ping: bool) -> None:
        self.spec = spec
        self.limit = limit
        self.wants_ping = wants_ping
        self.queue: deque[EventRecord] = deque()
        self.last = 0  # the highest id this stream has sent (or skipped as not wanted)
        self.overflowed = False
        self.ping = False
        self.closed = False
        self.finished: str | None = None  # the end, already written through the sink
        self.sink: Sink | None = None
        # The next delivery may go through the sink: the stream's task is parked with
        # nothing pending, so nothing it would send can come out of order. Set on parking,
        # cleared by whatever wakes the task, so that a delivery to thousands of streams
        # tests one flag each instead of re-deriving it.
        self.direct = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def ready(self) -> bool:
        return bool(self.queue) or self.overflowed or self.ping or self.closed

    def offer(self, batch: Batch) -> bool:
        """Take a dispatch; True when the stream's task must wake to handle it."""
        if self.direct and batch.first_id > self.last:
            assert self.sink is not None
            if self.sink(batch.framed):
                self.last = batch.last_id
                if batch.done is None:
                    return False
                self.direct = False
                self.finished = batch.done
                return True
        if self.finished is not None:
            return False
        for event in batch.wanted:
            self.push(event)
        return True

    def offer_ping(self) -> None:
        if self.direct:
            assert self.sink is not None
            if self.sink(_PING_CHUNK):
                return
        self.ping = True
        self.wake()

    def push(self, event: EventRecord) -> None:
        self.direct = False
        if self.overflowed:
            return
        if len(self.queue) >= self.limit:
            self.overflowed = True
            self.queue.clear()
            return
        self.queue.append(event)

    def wake(self) -> None:
        self.direct = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        if self.ready or self.finished is not None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.direct = self.sink is not None
        try:
            await waiter
        finally:
            self.direct = False
            self._waiter = None

    def take(self) -> list[EventRecord]:
        items = list(self.queue)
        self.queue.clear()
        return items

    def reset(self) -> None:
        """Forget the inbox; the caller re-reads up to the fan-out's cursor from the table."""
        self.queue.clear()
        self.overflowed = False

    def close(self) -> None:
        self.closed = True
        self.wake()
