"""A worker as a process of its own: run until signalled, drained on SIGTERM.

``taskgate/jobs.py:serve_worker`` assembles the process (database, runtime services, the
registry of job kinds, the outbound dispatcher) and runs its worker here.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

from taskgate.runtime.worker import Worker


async def run_until_signalled(worker: Worker, grace_seconds: float) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, which drains it; a second signal (or a grace
    of zero) skips the grace period."""
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


def run_blocking(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` to the end; on uvloop when it is installed (as uvicorn does)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)
