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
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.db.bulk import Rows, insert_rows
from taskgate.db.session import Database, on_commit
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
# Transactions in flight per process: enough to keep the CPU busy while commits are flushed.
WRITERS = 3


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
    """Insert ``batch`` in the session's transaction, whatever its size in one statement on
    PostgreSQL (one per table elsewhere). The events are announced and the workers woken once
    the session commits."""
    if not batch:
        return
    tables: list[Rows] = [
        (_SESSIONS, [rows.chat for rows in batch if rows.chat is not None]),
        (_TASKS, [rows.task for rows in batch]),
        (_AUDIT, [rows.audit for rows in batch]),
        (_JOBS, [rows.job for rows in batch if rows.job is not None]),
        (_EVENTS, [rows.event for rows in batch]),
    ]
    for event_id in await insert_rows(session, tables, returning=_EVENTS.c.id):
        announce_after_commit(session, event_id)
    if any(rows.job is not None for rows in batch):
        wake_after_commit(session, RUN_KIND)


@dataclass
class _Waiting:
    new: NewTask
    written: asyncio.Future[Accepted]


class TaskIntake:
    """Group commit for accepted tasks, one per API process.

    Up to ``writers`` transactions are in flight at once, so the process goes on turning
    requests into rows while earlier batches wait on the database; what arrives meanwhile
    forms the next batch.
    """

    def __init__(self, db: Database, *, max_batch: int = MAX_BATCH, writers: int = WRITERS) -> None:
        self._db = db
        self._max_batch = max_batch
        self._max_writers = writers
        self._waiting: list[_Waiting] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def store(self, new: NewTask) -> Accepted:
        """Write ``new`` and return its task once committed. Should the caller be cancelled
        meanwhile, the task is still written: it was accepted, the answer was just lost."""
        waiting = _Waiting(new, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if len(self._writers) < self._max_writers:
            writer = asyncio.create_task(self._drain(), name="task-intake")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await waiting.written

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            await self._write_batch(batch)

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
        rows: list[TaskRows] = []

        async def answer() -> None:
            # First of the after-commit hooks: the waking of workers needs no one waiting on it.
            for waiting, task_rows in zip(written, rows, strict=True):
                if not waiting.written.done():
                    waiting.written.set_result(task_rows.accepted())

        # The batch is written by one statement (stage): no BEGIN and COMMIT around it.
        async with self._db.transaction(single_statement=True) as session:
            on_commit(session, answer)
            for waiting in batch:
                try:
                    rows.append(await waiting.new.build(session))
                except TaskgateError as error:
                    _settle(waiting, error)
                    continue
                written.append(waiting)
            await stage(session, rows)


def _settle(waiting: _Waiting, error: BaseException) -> None:
    if not waiting.written.done():
        waiting.written.set_exception(error)
