"""Watching running jobs: a handler stops within a second of its job's cancellation, and as
soon as its lease is no longer this worker's (another worker retook the job)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Mapping

import structlog

from taskgate.db.session import Database
from taskgate.runtime import leases
from taskgate.runtime.outcomes import Running, StopReason

log = structlog.get_logger()
WATCH_SECONDS = 0.5  # how often running jobs' cancel flags and leases are re-read


async def watch_running(
    db: Database, handlers: Mapping[uuid.UUID, Running], check_now: asyncio.Event
) -> None:
    """Re-read the running jobs' rows every ``WATCH_SECONDS``, or at once when ``check_now``
    is set (a cancel was announced), and stop the handlers whose job was cancelled or lost."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(check_now.wait(), timeout=WATCH_SECONDS)
        check_now.clear()
        if not handlers:
            continue
        ids = list(handlers)
        try:
            async with db.transaction(write=False) as session:
                states = await leases.lease_states(session, ids)
        except Exception as exc:
            log.warning("worker_watch_failed", error=repr(exc))
            continue
        for job_id in ids:
            running = handlers.get(job_id)
            if running is None or running.ctx.completed:
                continue
            state = states.get(job_id)
            if (
                state is None
                or state.status != "leased"
                or state.fencing_token != running.ctx.fencing_token
            ):
                running.stop(StopReason.LOST)
            elif state.cancel_requested:
                running.stop(StopReason.CANCEL)
