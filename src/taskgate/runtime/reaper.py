"""Housekeeping every worker runs: retake expired leases, prune finished jobs and old nodes."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import structlog

from taskgate.clock import utcnow
from taskgate.runtime import leases, nodes
from taskgate.runtime.context import Runtime
from taskgate.runtime.outcomes import dead_letter_payload
from taskgate.runtime.queue import DEAD_LETTER_KIND, enqueue, retry_delay

log = structlog.get_logger()
REAP_BATCH = 200
PRUNE_BATCH = 1000
PRUNE_BATCHES_PER_PASS = 20
PRUNE_SECONDS = 60.0


async def reap_expired(runtime: Runtime) -> int:
    """Jobs whose worker stopped heartbeating go back to the queue with backoff, or die once
    out of attempts (the kind's on_dead hook then runs through a dead-letter job)."""
    async with runtime.db.transaction() as session:
        expired = await leases.expired(session, REAP_BATCH)
        for job in expired:
            max_attempts = job.max_attempts or runtime.settings.worker.max_attempts
            if job.cancel_requested:
                await leases.cancel_expired(session, job.id)
            elif job.attempts < max_attempts:
                await leases.requeue_expired(session, job.id, retry_delay(job.attempts))
            else:
                reason = f"lease expired after {job.attempts} attempts"
                await leases.bury_expired(session, job.id, reason)
                if job.kind != DEAD_LETTER_KIND:
                    payload = dead_letter_payload(job.id, job.kind, job.payload, reason)
                    await enqueue(session, DEAD_LETTER_KIND, payload)
    if expired:
        log.warning("queue_leases_expired", count=len(expired), node=runtime.node_id)
    return len(expired)


async def prune(runtime: Runtime) -> int:
    """Delete finished jobs and silent nodes past retention, a bounded batch at a time."""
    cutoff = utcnow() - timedelta(hours=runtime.settings.worker.retention_hours)
    removed = 0
    for _ in range(PRUNE_BATCHES_PER_PASS):
        async with runtime.db.transaction() as session:
            count = await leases.prune_finished(session, cutoff, PRUNE_BATCH)
        removed += count
        if count < PRUNE_BATCH:
            break
    async with runtime.db.transaction() as session:
        await nodes.prune(session, cutoff)
    return removed


async def run_reaper(runtime: Runtime) -> None:
    """Every worker sweeps every few seconds, jittered so a fleet spreads out. Sweeps are
    cheap (partial indexes) and concurrent ones skip each other's rows (SKIP LOCKED)."""
    interval = max(1.0, min(5.0, runtime.settings.worker.lease_seconds / 2))
    loop = asyncio.get_running_loop()
    next_prune = loop.time()
    while True:
        try:
            while await reap_expired(runtime) >= REAP_BATCH:
                pass
            if loop.time() >= next_prune:
                next_prune = loop.time() + PRUNE_SECONDS
                await prune(runtime)
        except Exception as exc:
            log.warning("queue_reaper_failed", error=repr(exc))
        await asyncio.sleep(interval * random.uniform(0.8, 1.2))
