"""How "there are committed events up to id N" travels between processes.

A notification carries no event: the table is the truth and readers look again. So a lost
notification costs latency, never an event, and after every (re)connect the listener asks
its readers to look again for whatever was announced while it was away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

log = structlog.get_logger()

# ``None`` means "look again from where you are" (after a reconnect).
Notify = Callable[[int | None], None]
_KEEPALIVE_SECONDS = 10.0
_MAX_BACKOFF_SECONDS = 5.0
_FLUSH_SECONDS = 2.0


class Transport(Protocol):
    async def start(self, notify: Notify, *, listen: bool) -> None: ...

    def publish(self, max_id: int) -> None:
        """Announce committed ids up to ``max_id``; never blocks the committing caller."""

    async def stop(self) -> None: ...


class LocalTransport:
    """One process (embedded SQLite): the bus's own after-commit signal is all there is."""

    async def start(self, notify: Notify, *, listen: bool) -> None:
        return None

    def publish(self, max_id: int) -> None:
        return None

    async def stop(self) -> None:
        return None


def parse_announcement(payload: str, node: str) -> int | None:
    """``node:max_id`` → max_id, or None for our own announcements (already seen locally)."""
    sender, _, value = payload.rpartition(":")
    if sender == node or not value.isdigit():
        return None
    return int(value)


class _Outbox:
    """The highest id not yet announced; sends coalesce while one is in flight."""

    def __init__(self) -> None:
        self.pending: int | None = None
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    def put(self, max_id: int) -> None:
        self.pending = max_id if self.pending is None else max(self.pending, max_id)
        self.idle.clear()
        self.wake.set()

    def take(self) -> int | None:
        value, self.pending = self.pending, None
        self.wake.clear()
        return value

    def sent(self) -> None:
        if self.pending is None:
            self.idle.set()

    async def flush(self, timeout: float) -> None:
        """Give a process that is stopping a moment to announce its last commits."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)


class PostgresTransport:
    """LISTEN/NOTIFY on one dedicated connection per process, reconnected when it drops.
    NOTIFY is sent after the writer's commit by this task, outside the write transaction."""

    def __init__(self, dsn: str, channel: str, node: str) -> None:
        self.dsn = dsn
        self.channel = channel
        self.node = node
        self.outbox = _Outbox()
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None
        self._notify: Notify = lambda _: None
        self._listen = False
        self._task: asyncio.Task[None] | None = None

    async def start(self, notify: Notify, *, listen: bool) -> None:
        self._notify = notify
        self._listen = listen
        self._task = asyncio.create_task(self._run(), name="event-bus-postgres")

    def publish(self, max_id: int) -> None:
        self.outbox.put(max_id)

    async def stop(self) -> None:
        await self.outbox.flush(_FLUSH_SECONDS)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        max_id = parse_announcement(payload, self.node)
        if max_id is not None:
            self._notify(max_id)

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                connection = await asyncpg.connect(
                    self.dsn,
                    timeout=10,
                    server_settings={"application_name": "taskgate-event-bus"},
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("event_bus_connect_failed", transport="postgres", error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            try:
                connection.add_termination_listener(lambda _conn: self.outbox.wake.set())
                if self._listen:
                    await connection.add_listener(self.channel, self._on_notification)
                    self._notify(None)
                self.backend_pid = connection.get_server_pid()
                self.connected.set()
                backoff = 0.1
                await self._announce(connection)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("event_bus_connection_lost", transport="postgres", error=str(exc))
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), timeout=2)
                if not connection.is_closed():
                    connection.terminate()
            await asyncio.sleep(backoff)

    async def _announce(self, connection: asyncpg.Connection) -> None:
        while True:
            try:
                await asyncio.wait_for(self.outbox.wake.wait(), timeout=_KEEPALIVE_SECONDS)
            except TimeoutError:
                # A half-open TCP connection would otherwise listen to silence forever.
                await asyncio.wait_for(connection.fetchval("SELECT 1"), _KEEPALIVE_SECONDS)
                continue
            if connection.is_closed():
                raise asyncpg.InterfaceError("the bus connection closed")
            max_id = self.outbox.take()
            if max_id is None:
                continue
            try:
                await connection.execute(
                    "SELECT pg_notify($1, $2)", self.channel, f"{self.node}:{max_id}"
                )
            except BaseException:
                self.outbox.put(max_id)
                raise
            self.outbox.sent()


class RedisTransport:
    """Redis pub/sub: PUBLISH after commit, one SUBSCRIBE per process. Every (re)subscription
    confirmation triggers a catch-up read, covering what was published while disconnected."""

    def __init__(self, url: str, channel: str, node: str) -> None:
        self.url = url
        self.channel = channel
        self.node = node
        self.outbox = _Outbox()
        self.subscribed = asyncio.Event()
        self._notify: Notify = lambda _: None
        self._client: aioredis.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, notify: Notify, *, listen: bool) -> None:
        self._notify = notify
        self._client = aioredis.Redis.from_url(
            self.url,
            health_check_interval=_KEEPALIVE_SECONDS,
            socket_connect_timeout=5,
            client_name=f"taskgate-event-bus-{self.node}",
        )
        self._tasks.append(asyncio.create_task(self._publish(), name="event-bus-redis-pub"))
        if listen:
            self._tasks.append(asyncio.create_task(self._subscribe(), name="event-bus-redis-sub"))

    def publish(self, max_id: int) -> None:
        self.outbox.put(max_id)

    async def stop(self) -> None:
        await self.outbox.flush(_FLUSH_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()

    async def _publish(self) -> None:
        assert self._client is not None
        backoff = 0.1
        while True:
            await self.outbox.wake.wait()
            max_id = self.outbox.take()
            if max_id is None:
                continue
            try:
                await self._client.publish(self.channel, f"{self.node}:{max_id}")
                self.outbox.sent()
                backoff = 0.1
            except (RedisError, OSError) as exc:
                log.warning("event_bus_publish_failed", transport="redis", error=str(exc))
                self.outbox.put(max_id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    async def _subscribe(self) -> None:
        assert self._client is not None
        backoff = 0.1
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=_KEEPALIVE_SECONDS)
                    if message is not None:
                        self._receive(message)
                        backoff = 0.1
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("event_bus_connection_lost", transport="redis", error=str(exc))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def _receive(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            # Also sent when redis-py reconnects and resubscribes by itself.
            self.subscribed.set()
            self._notify(None)
        elif message["type"] == "message":
            data = message["data"]
            payload = data.decode() if isinstance(data, bytes) else str(data)
            max_id = parse_announcement(payload, self.node)
            if max_id is not None:
                self._notify(max_id)
