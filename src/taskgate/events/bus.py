"""The event bus: committed event ids reach every API process.

Commits in this process arrive through the database's after-commit signal ("events"); the
bus wakes local readers at once and announces the highest id to other processes through a
transport (PostgreSQL NOTIFY, Redis pub/sub, or nothing when one process is all there is).
Readers get "something new up to id N" notifications and read the table themselves."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from sqlalchemy.engine import make_url

from taskgate.db.session import Database
from taskgate.errors import RateLimited, ServiceUnavailable
from taskgate.events.fanout import EventFanout
from taskgate.events.outbox import EVENTS_COMMITTED
from taskgate.events.transports import (
    LocalTransport,
    PostgresTransport,
    RedisTransport,
    Transport,
)
from taskgate.settings import Settings

_NOTHING: Any = object()


class Notifications:
    """One reader's view of the bus. Notifications coalesce (the reader sees the highest id,
    or None meaning "look again"), so a slow reader never builds a backlog here."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._hint: Any = _NOTHING
        self._event = asyncio.Event()
        self.closed = False

    def put(self, hint: int | None) -> None:
        if self._hint is _NOTHING or hint is None:
            self._hint = hint
        elif self._hint is not None:
            self._hint = max(self._hint, hint)
        self._event.set()

    async def wait(self, timeout: float | None = None) -> tuple[bool, int | None]:
        """(notified, hint): (False, None) when ``timeout`` passed without a notification."""
        if self._hint is _NOTHING:
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return False, None
        hint, self._hint = self._hint, _NOTHING
        self._event.clear()
        return True, None if hint is _NOTHING else hint

    def __aiter__(self) -> AsyncIterator[int | None]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[int | None]:
        while not self.closed:
            _, hint = await self.wait()
            if not self.closed:
                yield hint

    def close(self) -> None:
        self.closed = True
        self._bus._readers.discard(self)
        self._event.set()


class StreamSlot:
    def __init__(self, slots: StreamSlots, user_id: uuid.UUID) -> None:
        self._slots = slots
        self._user_id = user_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self._user_id)


class StreamSlots:
    """Open streams per user in this process; past the cap a new one is refused with 429."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[uuid.UUID, int] = {}

    def acquire(self, user_id: uuid.UUID) -> StreamSlot:
        count = self._open.get(user_id, 0)
        if count >= self.limit:
            raise RateLimited(
                f"Too many open streams (at most {self.limit}); close one first.",
                headers={"Retry-After": "1"},
            )
        self._open[user_id] = count + 1
        return StreamSlot(self, user_id)

    def active(self, user_id: uuid.UUID) -> int:
        return self._open.get(user_id, 0)

    def _release(self, user_id: uuid.UUID) -> None:
        count = self._open.get(user_id, 0) - 1
        if count > 0:
            self._open[user_id] = count
        else:
            self._open.pop(user_id, None)


def transport_for(settings: Settings, node: str, channel: str | None = None) -> Transport:
    """The transport ``settings`` choose, on ``channel`` (default: the events channel)."""
    choice = settings.streams.bus
    if choice == "auto":
        choice = "redis" if settings.redis_url else "memory" if settings.is_sqlite else "postgres"
    channel = channel or settings.streams.channel
    if choice == "redis":
        if not settings.redis_url:
            raise ValueError("streams.bus is 'redis' but redis_url is not set")
        return RedisTransport(settings.redis_url, channel, node)
    if choice == "postgres":
        url = make_url(settings.database_url)
        if url.get_backend_name() != "postgresql":
            raise ValueError("streams.bus is 'postgres' but the database is not PostgreSQL")
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresTransport(dsn, channel, node)
    return LocalTransport()


class EventBus:
    """A Component of the API process (created in ``create_app``). Worker processes that
    write events run one too, with ``open(listen=False)``, so their commits are announced."""

    name = "event-bus"

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.node = secrets.token_hex(6)
        self.transport = transport_for(settings, self.node)
        self.slots = StreamSlots(settings.streams.max_streams_per_principal)
        self._readers: set[Notifications] = set()
        # The highest id announced as committed: where an open feed starts "now".
        self.latest_id = 0
        self._fanout: EventFanout | None = None
        self._open = False

    @property
    def fanout(self) -> EventFanout:
        if self._fanout is None:
            # Not started, or stopping: a stream opened now would never hear of an event.
            raise ServiceUnavailable("Live streams are not available right now.")
        return self._fanout

    async def start(self, app: FastAPI) -> None:
        await self.open()

    async def open(self, *, listen: bool = True) -> None:
        self.db.listen(EVENTS_COMMITTED, self.publish)
        await self.transport.start(self._notify_local, listen=listen)
        if listen:
            self._fanout = EventFanout(self.db, self.settings.streams, self.subscribe())
            await self._fanout.start()
        self._open = True

    async def stop(self) -> None:
        if not self._open:
            return
        self._open = False
        listeners = self.db.listeners.get(EVENTS_COMMITTED, [])
        if self.publish in listeners:
            listeners.remove(self.publish)
        if self._fanout is not None:
            await self._fanout.stop()
            self._fanout = None
        await self.transport.stop()
        for reader in list(self._readers):
            reader.close()

    async def publish(self, ids: list[Any]) -> None:
        """Called after a commit with the ids it wrote; never waits on the network."""
        if not ids:
            return
        max_id = max(int(i) for i in ids)
        self._notify_local(max_id)
        self.transport.publish(max_id)

    def subscribe(self) -> Notifications:
        """An async iterator of "new events up to id N" (None: look again)."""
        reader = Notifications(self)
        self._readers.add(reader)
        return reader

    def _notify_local(self, hint: int | None) -> None:
        if hint is not None and hint > self.latest_id:
            self.latest_id = hint
        for reader in self._readers:
            reader.put(hint)
