"""Running one job's handler and writing its outcome, fenced by the lease's token."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.session import Database
from taskgate.runtime import leases
from taskgate.runtime.bookkeeping import Bookkeeping
from taskgate.runtime.context import JobContext, LeaseLost, PermanentFailure, RetryLater
from taskgate.runtime.queue import DEAD_LETTER_KIND, JobStatus, enqueue, retry_delay

log = structlog.get_logger()
_MAX_ERROR = 4000
_COMPLETE_BATCH = 1000
# How long a success may wait for a claim to carry it before the flusher writes it alone.
_LINGER_SECONDS = 0.005


class StopReason(StrEnum):
    CANCEL = "cancel"  # cancellation was requested
    LOST = "lost"  # the lease is no longer ours
    DRAIN = "drain"  # the worker is stopping and the grace period ran out


class Verdict(StrEnum):
    DONE = "done"
    ALREADY_SETTLED = "settled"  # the handler completed it, or the lease is gone
    RETRY = "retry"  # RetryLater: again after its delay, if attempts remain
    FAILED = "failed"  # an error or timeout: again with backoff, if attempts remain
    PERMANENT = "permanent"
    CANCELLED = "cancelled"
    RELEASE = "release"


@dataclass
class Outcome:
    verdict: Verdict
    error: str | None = None
    delay: float | None = None


@dataclass
class Running:
    """A job whose handler runs on this worker, as its own task."""

    ctx: JobContext
    task: asyncio.Future[None]
    timeout: float | None = None
    stop_reason: StopReason | None = None
    timed_out: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    interrupted: bool = False

    def stop(self, reason: StopReason) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self._interrupt()

    def time_out(self) -> None:
        if not self.task.done():
            self.timed_out = True
        self._interrupt()

    def _interrupt(self) -> None:
        """Cancel the handler once. A cancel request is announced twice (in-process and by
        NOTIFY) and the watch loop stops the job at each: a second cancel would cut short a
        handler recording the first (a task's CANCELLED), whose lease then ends unrecorded."""
        if not self.interrupted and not self.task.done():
            self.interrupted = True
            self.task.cancel()


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:_MAX_ERROR]


def judge(running: Running) -> Outcome:
    """How the finished handler ended, and so what to write."""
    ctx, task = running.ctx, running.task
    if ctx.completed or running.stop_reason is StopReason.LOST:
        return Outcome(Verdict.ALREADY_SETTLED)
    if running.stop_reason is StopReason.CANCEL:
        return Outcome(Verdict.CANCELLED)
    if running.stop_reason is StopReason.DRAIN:
        return Outcome(Verdict.RELEASE)
    if running.timed_out:
        return Outcome(Verdict.FAILED, f"timed out after {running.timeout:g} s")
    if task.cancelled():
        return Outcome(Verdict.FAILED, "the handler was cancelled")
    exc = task.exception()
    if exc is None:
        return Outcome(Verdict.DONE)
    if isinstance(exc, RetryLater):
        return Outcome(Verdict.RETRY, exc.reason[:_MAX_ERROR], exc.delay_seconds)
    if isinstance(exc, PermanentFailure):
        return Outcome(Verdict.PERMANENT, _describe(exc))
    if isinstance(exc, LeaseLost):
        log.info("job_lease_lost", job_id=str(ctx.job_id), kind=ctx.kind)
        return Outcome(Verdict.ALREADY_SETTLED)
    log.error("job_failed", job_id=str(ctx.job_id), kind=ctx.kind, exc_info=exc)
    return Outcome(Verdict.FAILED, _describe(exc))


def dead_letter_payload(
    job_id: uuid.UUID, kind: str, payload: dict[str, Any], reason: str
) -> dict[str, Any]:
    return {"job_id": str(job_id), "kind": kind, "payload": payload, "reason": reason}


class OutcomeWriter:
    """Writes outcomes only while the token still holds.

    Successes are batched: the worker's next claim takes the pending ones into its own
    transaction (one commit for both), and a flusher writes whatever no claim picked up
    within a few milliseconds (an idle queue, or a worker that is full).
    """

    def __init__(
        self, db: Database, books: Bookkeeping, settled: Callable[[uuid.UUID], None]
    ) -> None:
        self._db = db
        self._books = books
        self._settled = settled
        self._pending: list[JobContext] = []
        self._ready = asyncio.Event()

    def complete_later(self, ctx: JobContext) -> None:
        self._pending.append(ctx)
        self._ready.set()

    def take(self) -> list[JobContext]:
        batch = self._pending[:_COMPLETE_BATCH]
        del self._pending[:_COMPLETE_BATCH]
        return batch

    def put_back(self, batch: list[JobContext]) -> None:
        """A batch whose transaction failed: it goes out again with the next one."""
        self._pending[:0] = batch
        if batch:
            self._ready.set()

    @staticmethod
    def held(batch: list[JobContext]) -> list[tuple[uuid.UUID, int]]:
        return [(ctx.job_id, ctx.fencing_token) for ctx in batch]

    def completed(self, batch: list[JobContext], done: set[uuid.UUID]) -> None:
        for ctx in batch:
            if ctx.job_id not in done:
                log.info("job_lease_lost", job_id=str(ctx.job_id), kind=ctx.kind)
            self._settled(ctx.job_id)

    async def run(self) -> None:
        """Write the completions no claim took, until cancelled (then :meth:`flush`)."""
        delay = 0.1
        while True:
            await self._ready.wait()
            await asyncio.sleep(_LINGER_SECONDS)
            self._ready.clear()
            while self._pending:
                try:
                    await self._write_batch()
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("queue_complete_failed", retry_in=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def flush(self, attempts: int = 5) -> None:
        for _ in range(attempts):
            try:
                while self._pending:
                    await self._write_batch()
                return
            except Exception:
                log.exception("queue_complete_failed")
                await asyncio.sleep(0.5)

    async def _write_batch(self) -> None:
        batch = self.take()
        try:
            done = await self._books.complete(self.held(batch))
        except BaseException:
            self.put_back(batch)
            raise
        self.completed(batch, done)

    async def settle(self, ctx: JobContext, outcome: Outcome) -> None:
        """Write any outcome other than a plain success, retrying briefly on database errors
        (if it never gets through, the lease expires and the reaper takes over)."""
        try:
            for attempt in range(4):
                try:
                    await self._settle(ctx, outcome)
                    return
                except Exception:
                    log.exception("job_outcome_write_failed", job_id=str(ctx.job_id))
                    await asyncio.sleep(0.25 * 2**attempt)
        finally:
            self._settled(ctx.job_id)

    async def _settle(self, ctx: JobContext, outcome: Outcome) -> None:
        verdict = outcome.verdict
        if verdict is Verdict.ALREADY_SETTLED:
            return
        async with self._db.transaction() as session:
            job, token = ctx.job_id, ctx.fencing_token
            if verdict is Verdict.DONE:
                await leases.mark_done(session, job, token)
            elif verdict is Verdict.CANCELLED:
                await leases.finish(session, job, token, JobStatus.CANCELLED, "cancelled")
            elif verdict is Verdict.RELEASE:
                await leases.give_back(session, job, token)
            elif verdict is Verdict.PERMANENT:
                if await leases.finish(session, job, token, JobStatus.FAILED, outcome.error):
                    await self._dead_letter(session, ctx, outcome.error or "failed")
            elif ctx.attempt < ctx.max_attempts:
                delay = outcome.delay if outcome.delay is not None else retry_delay(ctx.attempt)
                await leases.retry(session, job, token, delay=delay, error=outcome.error)
            else:
                reason = f"gave up after {ctx.attempt} attempts: {outcome.error}"[:_MAX_ERROR]
                if await leases.finish(session, job, token, JobStatus.DEAD, reason):
                    await self._dead_letter(session, ctx, reason)

    @staticmethod
    async def _dead_letter(session: AsyncSession, ctx: JobContext, reason: str) -> None:
        if ctx.kind == DEAD_LETTER_KIND:
            return
        payload = dead_letter_payload(ctx.job_id, ctx.kind, ctx.payload, reason)
        await enqueue(session, DEAD_LETTER_KIND, payload)
