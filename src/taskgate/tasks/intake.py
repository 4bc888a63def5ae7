"""Writing accepted tasks: in the caller's transaction, or by group commit for the API.

A task's unit of work inserts up to five rows (its session, the task, an audit record, its
queue job and its ``task.created`` event). Written in a transaction of its own, that is about
ten round trips to the database per request, and the round trips, not the rows, bound how many
tasks one API process accepts. :class:`TaskIntake` lets submissions that arrive while a write
is in flight share the next transaction: under load one commit carries dozens of tasks, when
idle a task is written at once, and every request still answers only after its task has been
committed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import Table, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.session import Database
from taskgate.errors import Conflict, TaskgateError
from taskgate.events.outbox import announce_after_commit
from taskgate.models import AuditRecord, ChatSession, Event, QueueJob, Task
from taskgate.runtime.queue import wake_after_commit
from taskgate.tasks.lifecycle import RUN_KIND

log = structlog.get_logger()
_SESSIONS: Table = ChatSession.__table__  # type: ignore[assignment]
_TASKS: Table = Task.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditRecord.__table__  # type: ignore[assignment]
_JOBS: Table = QueueJob.__table__  # type: ignore[assignment]
_EVENTS: Table = Event.__table__  # type: ignore[assignment]
# Enough to amortise a commit over many tasks, small enough that one statement stays modest.
MAX_BATCH = 256


@dataclass(frozen=True)
class Accepted:
    """What the submitter hears back about a stored task."""

    id: uuid.UUID
    session_id: uuid.UUID
    status: str
    created_at: datetime
    error: str | None = None


@dataclass(frozen=True)
class TaskRows:
    """The rows one accepted task inserts, as column values (each table's rows always carry
    the same keys, so a batch goes into one multi-row INSERT per table)."""

    task: dict[str, Any]
    event: dict[str, Any]
    audit: dict[str, Any]
    job: dict[str, Any] | None
    chat: dict[str, Any] | None

    def accepted(self) -> Accepted:
        task = self.task
        return Accepted(task["id"], task["session_id"], task["status"], task["created_at"])


class NewTask(Protocol):
    """An accepted task not yet written. ``build`` makes its rows afresh each time, in the
    transaction that will write them (so checks that read the database hold at commit), and
    a shared write that fails can be retried task by task."""

    async def build(self, session: AsyncSession) -> TaskRows: ...


async def stage(session: AsyncSession, batch: Sequence[TaskRows]) -> None:
    """Insert ``batch`` in the session's transaction: one statement per table whatever its
    size. The events are announced and the workers woken once the session commits."""
    if not batch:
        return
    chats = [rows.chat for rows in batch if rows.chat is not None]
    if chats:
        await session.execute(insert(_SESSIONS), chats)
    await session.execute(insert(_TASKS), [rows.task for rows in batch])
    await session.execute(insert(_AUDIT), [rows.audit for rows in batch])
    jobs = [rows.job for rows in batch if rows.job is not None]
    if jobs:
        await session.execute(insert(_JOBS), jobs)
        wake_after_commit(session, RUN_KIND)
    stored = await session.execute(
        insert(_EVENTS).returning(_EVENTS.c.id, sort_by_parameter_order=True),
        [rows.event for rows in batch],
    )
    for event_id in stored.scalars():
        announce_after_commit(session, event_id)


@dataclass
class _Waiting:
    new: NewTask
    written: asyncio.Future[Accepted]


class TaskIntake:
    """Group commit for accepted tasks, one per API process."""

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, new: NewTask) -> Accepted:
        """Write ``new`` and return its task once committed. Should the caller be cancelled
        meanwhile, the task is still written: it was accepted, the answer was just lost."""
        waiting = _Waiting(new, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain(), name="task-intake")
        return await waiting.written

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._write_batch(batch)
        finally:
            self._writer = None

    async def _write_batch(self, batch: list[_Waiting]) -> None:
        try:
            await self._write(batch)
        except IntegrityError as error:
            if len(batch) > 1:
                # One task's conflict must not fail the others: write each on its own.
                for waiting in batch:
                    await self._write_batch([waiting])
                return
            log.warning("task_intake_conflict", error=str(error.orig))
            _settle(batch[0], Conflict("The task conflicts with a change made meanwhile."))
            return
        except Exception as error:  # the database is down, or a bug: every waiter hears of it
            for waiting in batch:
                _settle(waiting, error)

    async def _write(self, batch: list[_Waiting]) -> None:
        """Write the batch's tasks in one transaction; those refused by a check (another
        user's session, say) hear why and are left out."""
        written: list[_Waiting] = []
        async with self._db.transaction() as session:
            rows: list[TaskRows] = []
            for waiting in batch:
                try:
                    rows.append(await waiting.new.build(session))
                except TaskgateError as error:
                    _settle(waiting, error)
                    continue
                written.append(waiting)
            await stage(session, rows)
        for waiting, task_rows in zip(written, rows, strict=True):
            if not waiting.written.done():
                waiting.written.set_result(task_rows.accepted())


def _settle(waiting: _Waiting, error: BaseException) -> None:
    if not waiting.written.done():
        waiting.written.set_exception(error)
