"""Streamed output as events, written in small batches: a flush every ~100 ms or 16 KiB, each
one a unit of work under the job's lease, so a worker that lost its lease stops writing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.events.outbox import events_together, record_event
from taskgate.runtime.context import JobContext

T = TypeVar("T")
FLUSH_SECONDS = 0.1
FLUSH_BYTES = 16 * 1024


@dataclass(frozen=True)
class Subject:
    """The ids every event of one task attempt carries."""

    owner_id: uuid.UUID
    project_id: uuid.UUID
    task_id: uuid.UUID
    session_id: uuid.UUID | None
    run_id: uuid.UUID | None


@dataclass
class _Pending:
    type: str
    payload: dict[str, Any]
    job_id: uuid.UUID | None
    text_key: str | None = None
    merge_on: tuple[Any, ...] = field(default_factory=tuple)


class EventBatcher:
    """Collects events in order; text pieces of one stream (same type and ``merge_on``) that
    arrive back to back are joined into one event."""

    def __init__(
        self,
        ctx: JobContext,
        subject: Subject,
        *,
        interval: float = FLUSH_SECONDS,
        max_bytes: int = FLUSH_BYTES,
    ) -> None:
        self.ctx = ctx
        self.subject = subject
        self.interval = interval
        self.max_bytes = max_bytes
        self._pending: list[_Pending] = []
        self._bytes = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closed = False

    def add(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        job_id: uuid.UUID | None = None,
        text_key: str | None = None,
        merge_on: tuple[Any, ...] = (),
        urgent: bool = False,
    ) -> None:
        last = self._pending[-1] if self._pending else None
        if (
            text_key is not None
            and last is not None
            and last.type == type
            and last.text_key == text_key
            and last.job_id == job_id
            and last.merge_on == merge_on
        ):
            last.payload[text_key] += payload[text_key]
        else:
            self._pending.append(_Pending(type, dict(payload), job_id, text_key, merge_on))
        self._bytes += len(payload[text_key]) if text_key is not None else 256
        if urgent or self._bytes >= self.max_bytes:
            self._wake.set()

    async def flush(self) -> None:
        """Write what is pending in a unit of work of its own."""
        async with self._lock:
            if not self._pending:
                return
            async with self.ctx.transaction() as session:
                await self._write(session)

    async def flush_into(self, session: AsyncSession) -> None:
        """Write what is pending in the caller's unit of work (the one that ends the job, so
        a short job's output costs no transaction of its own)."""
        async with self._lock:
            await self._write(session)

    async def _write(self, session: AsyncSession) -> None:
        batch, self._pending, self._bytes = self._pending, [], 0
        subject = self.subject
        async with events_together(session):
            for item in batch:
                await record_event(
                    session,
                    item.type,
                    owner_id=subject.owner_id,
                    project_id=subject.project_id,
                    task_id=subject.task_id,
                    session_id=subject.session_id,
                    run_id=subject.run_id,
                    job_id=item.job_id,
                    payload=item.payload,
                )

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            if self._closed:
                return
            await self.flush()

    async def alongside(self, work: Awaitable[T]) -> T:
        """Run ``work`` while flushing in the background. A failed flush (a lost lease above
        all) stops ``work`` and is raised in its place. What is still pending when ``work``
        ends is left for the caller's last unit of work: :meth:`flush_into`."""
        flusher = asyncio.create_task(self._run())
        main = asyncio.ensure_future(work)
        try:
            await asyncio.wait({flusher, main}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await _stop(main)
            await _stop(flusher)
            raise
        if flusher.done():
            await _stop(main)
            flusher.result()
        self._closed = True
        self._wake.set()
        try:
            await flusher
        except asyncio.CancelledError:
            await _stop(flusher)
            raise
        return main.result()


async def _stop(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
