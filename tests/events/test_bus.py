"""The bus across processes: two API servers, events written by a third process, over
PostgreSQL LISTEN/NOTIFY and over Redis; and recovery when the bus connection drops."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.events.bus import EventBus
from taskgate.events.transports import PostgresTransport
from taskgate.settings import Settings
from tests.conftest import TEST_SECRET
from tests.events.conftest import ServerFactory
from tests.events.support import SseReader, emit, sse
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login
from tests.support.databases import in_ci
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("TASKGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")
# Far longer than any test: only the bus (or its reconnect catch-up) can deliver in time.
NO_POLLING = 120


async def redis_or_skip() -> str:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError):
        if in_ci():
            pytest.fail(f"Redis is unreachable at {REDIS_URL} and CI=true", pytrace=False)
        pytest.skip("Redis is not reachable (set CI=true to make this fatal)")
    finally:
        await client.aclose()
    return REDIS_URL


def process_env(settings: Settings, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        TASKGATE_DATABASE__URL=settings.database_url,
        TASKGATE_DATA_DIR=str(data_dir),
        TASKGATE_AUTH__JWT_SECRET=TEST_SECRET,
        TASKGATE_ADMIN_PASSWORD=ADMIN_PASSWORD,
        TASKGATE_RATE_LIMIT__ENABLED="false",
        TASKGATE_LOG_LEVEL="WARNING",
        TASKGATE_STREAMS__POLL_SECONDS=str(NO_POLLING),
        TASKGATE_STREAMS__CHANNEL=f"taskgate_test_{secrets.token_hex(4)}",
    )
    env.update(extra)
    return env


@asynccontextmanager
async def api_process(env: dict[str, str]) -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskgate.cli", "serve", "--no-worker", "--port", str(port),
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"server exited: {(await process.stderr.read()).decode()}")  # type: ignore[union-attr]
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url + "/health")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await eventually(ready, what="the API process to listen", timeout=60)
        yield url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def produce(
    env: dict[str, str], owner: uuid.UUID, session_id: uuid.UUID, n: int
) -> list[int]:
    """Events written by a third process (neither API server), announced by its own bus."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.events.producer", str(owner), str(session_id), str(n),
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return [int(line) for line in out.decode().split()]


async def ids(reader: SseReader, count: int) -> list[int]:
    return [frame.id for frame in await reader.events(count, timeout=15)]  # type: ignore[misc]


async def two_servers_one_writer(env: dict[str, str]) -> None:
    async with api_process(env) as first, api_process(env) as second:
        a = httpx.AsyncClient(base_url=first, timeout=30)
        b = httpx.AsyncClient(base_url=second, timeout=30)
        async with a, b:
            admin = await login(a, "admin", ADMIN_PASSWORD)
            user: User = await create_user(a, admin, "carol")
            session_id = uuid.uuid4()
            params = {"session_id": str(session_id)}
            async with sse(b, user, params=params) as stream_b:
                async with sse(a, user, params=params) as stream_a:
                    produced = await produce(env, user.id, session_id, 10)
                    assert await ids(stream_a, 10) == produced
                    assert await ids(stream_b, 10) == produced
                    seen_a = produced[-1]
                # The first client is away while the writer goes on.
                missed = await produce(env, user.id, session_id, 10)
                assert await ids(stream_b, 10) == missed
                async with sse(a, user, params=params, last_event_id=seen_a) as stream_a:
                    assert await ids(stream_a, 10) == missed
                    more = await produce(env, user.id, session_id, 5)
                    assert await ids(stream_a, 5) == more
                    assert await ids(stream_b, 5) == more
    assert produced == sorted(produced)
    assert produced[-1] < missed[0] < missed[-1] < more[0]


async def test_postgres_notify_reaches_every_api_process(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory()
    if settings.is_sqlite:
        pytest.skip("LISTEN/NOTIFY needs PostgreSQL")
    await two_servers_one_writer(process_env(settings, tmp_path))


async def test_redis_pubsub_reaches_every_api_process(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    url = await redis_or_skip()
    settings = settings_factory()
    await two_servers_one_writer(process_env(settings, tmp_path, TASKGATE_REDIS_URL=url))


@asynccontextmanager
async def outside_writer(settings: Settings) -> AsyncIterator[Database]:
    """Another process's view: its own engine and a bus that only announces."""
    db = Database(create_engine(settings))
    bus = EventBus(settings, db)
    await bus.open(listen=False)
    try:
        yield db
    finally:
        await bus.stop()
        await db.dispose()


async def test_postgres_listener_reconnects_and_catches_up(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(streams={"poll_seconds": NO_POLLING}) as server:
        if server.db.dialect != "postgresql":
            pytest.skip("LISTEN/NOTIFY needs PostgreSQL")
        alice = await server.user("alice")
        transport = server.app.state.bus.transport
        assert isinstance(transport, PostgresTransport)
        settings: Settings = server.app.state.settings
        async with sse(server, alice) as stream, outside_writer(settings) as other:
            first = await emit(other, alice.id, "before")
            assert (await stream.event()).id == first
            killed = transport.backend_pid
            async with other.transaction() as session:
                await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
            # Written while the listener is (most likely) away: its NOTIFY may be lost, the
            # catch-up read after reconnecting finds it anyway.
            second = await emit(other, alice.id, "during")
            assert (await stream.event(timeout=15)).id == second
            await eventually(
                lambda: transport.connected.is_set() and transport.backend_pid != killed,
                what="the listener to reconnect",
            )
            third = await emit(other, alice.id, "after")
            assert (await stream.event()).id == third


async def test_redis_listener_reconnects_and_catches_up(server_factory: ServerFactory) -> None:
    url = await redis_or_skip()
    channel = f"taskgate_test_{secrets.token_hex(4)}"
    streams = {"poll_seconds": NO_POLLING, "channel": channel}
    async with server_factory(redis_url=url, streams=streams) as server:
        alice = await server.user("alice")
        bus: EventBus = server.app.state.bus
        async with sse(server, alice) as stream, outside_writer(server.app.state.settings) as other:
            first = await emit(other, alice.id, "before")
            assert (await stream.event()).id == first
            admin = aioredis.Redis.from_url(url)
            try:
                name = f"taskgate-event-bus-{bus.node}"
                for client in await admin.client_list():
                    if client.get("name") == name and "subscribe" in client.get("cmd", ""):
                        await admin.client_kill_filter(_id=client["id"])
            finally:
                await admin.aclose()
            second = await emit(other, alice.id, "during")
            assert (await stream.event(timeout=15)).id == second
            third = await emit(other, alice.id, "after")
            assert (await stream.event()).id == third
