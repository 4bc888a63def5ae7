"""``taskgate worker``: one worker process on the configured database, drained on SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import structlog

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.logs import configure_logging
from taskgate.runtime.context import Runtime
from taskgate.runtime.worker import DEFAULT_GRACE_SECONDS, Worker
from taskgate.settings import Settings

log = structlog.get_logger()


async def serve_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
) -> None:
    """Run until SIGTERM or SIGINT (drain; a second signal skips the grace period)."""
    configure_logging(settings)
    db = Database(create_engine(settings))
    runtime = Runtime.create(settings, db)
    worker = Worker(runtime, concurrency=concurrency, grace_seconds=grace_seconds)
    # Workers also turn committed events into outbound deliveries; one dispatcher scans at a
    # time across processes, the others stand by.
    from taskgate.destinations.dispatcher import Dispatcher
    from taskgate.events.bus import EventBus

    # Announce this process's commits to API processes, so live streams see them at once.
    bus = EventBus(settings, db)
    await bus.open(listen=False)
    dispatcher = Dispatcher()
    await dispatcher.open(db, settings)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            worker.abort() if grace_seconds <= 0 else loop.create_task(worker.drain())
        else:
            worker.abort()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await worker.run_until_stopped()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await dispatcher.stop()
        await bus.stop()
        await runtime.aclose()
        await db.dispose()


def run(settings: Settings, *, concurrency: int | None, grace_seconds: float) -> None:
    """Blocking entry point; uses uvloop when it is installed (as uvicorn does)."""
    main = serve_worker(settings, concurrency=concurrency, grace_seconds=grace_seconds)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
