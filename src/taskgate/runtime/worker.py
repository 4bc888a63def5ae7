"""The worker: claims jobs in batches, runs their handlers, keeps their leases, and drains."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any

import structlog
from fastapi import FastAPI

from taskgate.runtime import leases, nodes
from taskgate.runtime.bookkeeping import Bookkeeping
from taskgate.runtime.context import JobContext, Runtime
from taskgate.runtime.handlers import JobKind, dead_letters
from taskgate.runtime.heartbeat import beat
from taskgate.runtime.notify import ANY_KIND, PG_CANCEL_CHANNEL, PG_JOBS_CHANNEL, PgListener
from taskgate.runtime.outcomes import (
    Outcome,
    OutcomeWriter,
    Running,
    StopReason,
    Verdict,
    judge,
)
from taskgate.runtime.queue import CANCEL_CHANNEL, DEAD_LETTER_KIND, JOBS_CHANNEL
from taskgate.runtime.reaper import run_reaper
from taskgate.runtime.sandbox.process import kill_running_sandboxes
from taskgate.runtime.services import RuntimeServices
from taskgate.runtime.watch import watch_running

log = structlog.get_logger()
DEFAULT_GRACE_SECONDS = 25.0


class Worker:
    """A Component (``name``, ``start(app)``, ``stop()``) or, standalone,
    ``await Worker(runtime, kinds=…).run_until_stopped()`` until ``drain()``.

    ``kinds`` are the job kinds this worker claims; dead-letter jobs of ``known`` kinds (by
    default the same) call their ``on_dead`` hooks here, claimed or not. As one of an app's
    components, without a ``runtime``, it works with the app's database and services.
    ``taskgate/jobs.py:Worker`` is this worker with the registry of every kind as its default.
    """

    name = "worker"

    def __init__(
        self,
        runtime: Runtime | None = None,
        *,
        kinds: Mapping[str, JobKind],
        known: Mapping[str, JobKind] | None = None,
        concurrency: int | None = None,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.runtime = runtime
        self._owns_runtime = False
        self._concurrency = concurrency
        dead_letter = dead_letters({**(known or {}), **kinds})
        self.kinds: dict[str, JobKind] = {DEAD_LETTER_KIND: dead_letter, **kinds}
        self._kind_names = sorted(self.kinds)
        self.grace_seconds = grace_seconds
        self._handlers: dict[uuid.UUID, Running] = {}  # handler running: uses a slot
        self._held: dict[uuid.UUID, JobContext] = {}  # lease ours until the outcome is written
        self._keyed: set[uuid.UUID] = set()  # held jobs with a concurrency key
        self._signal = asyncio.Event()  # a slot freed, work announced, or draining
        self._check_now = asyncio.Event()  # re-read running jobs' flags now
        self._more = True  # claimable work may exist
        self._draining = False
        self._aborted = False
        self.ready = asyncio.Event()  # set once the node is registered and claiming
        self.idle = asyncio.Event()  # set while it waits with no claimable work known
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._loops: list[asyncio.Task[None]] = []
        self._writer: OutcomeWriter | None = None
        self._books: Bookkeeping | None = None
        self._settling: set[asyncio.Task[Any]] = set()  # writing a non-success outcome

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def concurrency(self) -> int:
        return self._concurrency or self._rt.settings.worker.concurrency

    @property
    def _rt(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the worker has no runtime yet; start() builds it")
        return self.runtime

    @property
    def node_id(self) -> str:
        return self._rt.node_id

    async def start(self, app: FastAPI) -> None:
        if self.runtime is None:
            services: RuntimeServices = app.state.services
            self.runtime = Runtime.create(app.state.settings, app.state.db, services)
            self._owns_runtime = True
        self._task = asyncio.create_task(self.run_until_stopped(), name="worker")
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            ready.cancel()
            self._task.result()

    async def stop(self) -> None:
        try:
            await self.drain()
            if self._task is not None:
                await self._task
        except asyncio.CancelledError:  # no more waiting: the sandboxes go now, not after us
            self.abort()
            kill_running_sandboxes()
            raise

    async def drain(self) -> None:
        """Stop claiming; running jobs get ``grace_seconds`` to finish, then are released
        back to the queue. Returns once the worker has stopped."""
        if not self._draining:
            self._draining = True
            self._signal.set()
            log.info("worker_draining", node=self.runtime.node_id if self.runtime else None)
        if not self._started:
            return
        await self._stopped.wait()

    def abort(self) -> None:
        """Drain without a grace period (a second SIGTERM)."""
        self._aborted = True
        self._draining = True
        self._signal.set()

    async def run_until_stopped(self) -> None:
        rt = self._rt
        self._started = True
        self._books = Bookkeeping(rt.settings, rt.db)
        self._writer = OutcomeWriter(rt.db, self._books, self._settled)
        try:
            if not await self._register():
                return
            rt.db.listen(JOBS_CHANNEL, self._on_jobs_committed)
            rt.db.listen(CANCEL_CHANNEL, self._on_cancel_committed)
            self._spawn(self._writer.run())
            self._spawn(self._heartbeat_loop())
            self._spawn(watch_running(rt.db, self._handlers, self._check_now))
            self._spawn(run_reaper(rt))
            if rt.db.dialect == "postgresql":
                listener = PgListener(
                    rt.settings.database_url,
                    {PG_JOBS_CHANNEL: self._on_kinds, PG_CANCEL_CHANNEL: self._on_job_ids},
                    self._wake,
                )
                self._spawn(listener.run())
            self.ready.set()
            log.info("worker_started", node=rt.node_id, concurrency=self.concurrency)
            await self._claim_loop()
        finally:
            await self._shutdown()
            self._stopped.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._loops.append(asyncio.create_task(coro))

    async def _register(self) -> bool:
        delay = 0.5
        while not self._draining:
            try:
                async with self._rt.db.transaction() as session:
                    await nodes.register(
                        session,
                        self.node_id,
                        kinds=sorted(self.kinds),
                        concurrency=self.concurrency,
                        capabilities=self._rt.capabilities,
                    )
                return True
            except Exception as exc:
                log.warning("worker_register_failed", error=repr(exc), retry_in=delay)
                await self._sleep(delay)
                delay = min(delay * 2, 10.0)
        return False

    async def _shutdown(self) -> None:
        self._draining = True
        await self._set_node_status(nodes.NodeStatus.DRAINING)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (0 if self._aborted else self.grace_seconds)
        while self._handlers and not self._aborted and loop.time() < deadline:
            await asyncio.wait(self._running_tasks(), timeout=min(0.1, deadline - loop.time()))
        released = list(self._handlers.values())
        for running in released:
            running.stop(StopReason.DRAIN)
        if handlers := self._running_tasks():
            _, stuck = await asyncio.wait(handlers, timeout=10)
            if stuck and kill_running_sandboxes():
                await asyncio.wait(stuck, timeout=2)
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=10)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        if self._writer is not None:
            await self._writer.flush()
        if self._books is not None:
            await self._books.close()
        await self._set_node_status(nodes.NodeStatus.STOPPED)
        log.info("worker_stopped", node=self.node_id, released=len(released))
        if self._owns_runtime:
            await self._rt.aclose()

    def _running_tasks(self) -> set[asyncio.Future[None]]:
        return {running.task for running in self._handlers.values()}

    async def _set_node_status(self, status: nodes.NodeStatus) -> None:
        try:
            async with self._rt.db.transaction() as session:
                await nodes.heartbeat(session, self.node_id, status, self._rt.capabilities)
        except Exception as exc:
            log.warning("worker_node_update_failed", error=repr(exc))

    # -- wake-ups -------------------------------------------------------------------------

    def _wake(self) -> None:
        self._more = True
        self._signal.set()
        self._check_now.set()

    def _on_kinds(self, kinds: list[str]) -> None:
        if any(kind in self.kinds or kind == ANY_KIND for kind in kinds):
            self._more = True
            self._signal.set()

    def _on_job_ids(self, job_ids: list[str]) -> None:
        if any(uuid.UUID(job_id) in self._handlers for job_id in job_ids if job_id):
            self._check_now.set()

    async def _on_jobs_committed(self, kinds: list[Any]) -> None:
        if not self._draining:
            self._on_kinds([str(kind) for kind in kinds])

    async def _on_cancel_committed(self, job_ids: list[Any]) -> None:
        if any(job_id in self._handlers for job_id in job_ids):
            self._check_now.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early when signalled (work announced, a slot freed, draining)."""
        try:
            await asyncio.wait_for(self._signal.wait(), timeout=seconds)
        except TimeoutError:
            self._more = True

    # -- claiming and running ---------------------------------------------------------------

    async def _claim_loop(self) -> None:
        rt = self._rt
        poll = rt.settings.worker.poll_seconds
        error_delay = 0.5
        while not self._draining:
            self._signal.clear()
            free = self.concurrency - len(self._handlers)
            if free <= 0 or not self._more:
                if not self._more:
                    self.idle.set()
                await self._sleep(poll)
                self.idle.clear()
                continue
            # Handlers finishing in this same tick free their slots too: claim once for all.
            await asyncio.sleep(0)
            free = self.concurrency - len(self._handlers)
            self._more = False
            assert self._writer is not None
            assert self._books is not None
            finished = self._writer.take()  # their completions ride along with the claim
            try:
                done, claimed = await self._books.cycle(
                    self._writer.held(finished),
                    node_id=rt.node_id,
                    limit=free,
                    kinds=self._kind_names,
                    lease_seconds=rt.settings.worker.lease_seconds,
                )
                error_delay = 0.5
            except BaseException as exc:
                self._writer.put_back(finished)
                if not isinstance(exc, Exception):
                    raise
                log.warning("queue_claim_failed", error=repr(exc), retry_in=error_delay)
                self._more = True
                await asyncio.sleep(error_delay)
                error_delay = min(error_delay * 2, 10.0)
                continue
            self._writer.completed(finished, done)
            for job in claimed:
                self._start(job)
            if len(claimed) == free:
                self._more = True

    def _start(self, job: leases.Claimed) -> None:
        max_attempts = job.max_attempts or self._rt.settings.worker.max_attempts
        ctx = JobContext(
            self._rt, job.id, job.kind, job.payload, job.attempts, max_attempts, job.fencing_token
        )
        self._held[job.id] = ctx
        if job.concurrency_key is not None:
            self._keyed.add(job.id)
        kind = self.kinds.get(job.kind)
        if kind is None:  # claims ask only for our kinds; this is a guard, not a path
            outcome = Outcome(Verdict.PERMANENT, f"no handler for job kind {job.kind!r}")
            self._settle_later(ctx, outcome)
            return
        # A done-callback, not a supervising task per job: the hot path stays one task.
        running = Running(ctx, asyncio.ensure_future(kind.handler(ctx)), kind.timeout_seconds)
        if kind.timeout_seconds is not None:
            loop = asyncio.get_running_loop()
            running.timer = loop.call_later(kind.timeout_seconds, running.time_out)
        running.task.add_done_callback(lambda _task: self._finished(running))
        self._handlers[job.id] = running

    def _finished(self, running: Running) -> None:
        if running.timer is not None:
            running.timer.cancel()
        ctx = running.ctx
        self._handlers.pop(ctx.job_id, None)
        self._signal.set()
        outcome = judge(running)
        if outcome.verdict is Verdict.DONE:
            assert self._writer is not None
            self._writer.complete_later(ctx)
        elif outcome.verdict is Verdict.ALREADY_SETTLED:
            self._settled(ctx.job_id)
        else:
            self._settle_later(ctx, outcome)

    def _settle_later(self, ctx: JobContext, outcome: Outcome) -> None:
        assert self._writer is not None
        task = asyncio.create_task(self._writer.settle(ctx, outcome))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _settled(self, job_id: uuid.UUID) -> None:
        self._held.pop(job_id, None)
        if job_id in self._keyed:
            # The next job of its key may start now; don't leave it to the next poll.
            self._keyed.discard(job_id)
            self._more = True
            self._signal.set()

    # -- background loops -------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        rt = self._rt
        while True:
            await asyncio.sleep(rt.settings.worker.lease_seconds / 3)
            try:
                await beat(
                    rt,
                    held=self._held,
                    draining=self._draining,
                    kinds=self.kinds,
                    concurrency=self.concurrency,
                )
            except Exception as exc:
                log.warning("worker_heartbeat_failed", error=repr(exc))
