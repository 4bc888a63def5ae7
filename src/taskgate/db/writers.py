"""One writer at a time on the embedded SQLite database, and a watchdog for the one that stays.

SQLite has a single write lock per database file. Left to SQLite, every writer of the process
waits for it inside its driver thread (the busy handler), holding its connection's mutex all
the while; anything else that touches that connection from the event loop, such as the garbage
collector finalising one of its cursors, then blocks the whole process until the wait ends, and
the lock holder, which needs the event loop to finish, cannot release it: writes fail with
"database is locked" after the busy timeout. So the process queues its writers here, on the
event loop, before ``BEGIN IMMEDIATE``; SQLite's busy handler is left with other processes
only. Reads take no part: under WAL they run alongside the writer.

A writer that holds the gate past ``hold_limit`` seconds (a unit of work awaiting something
that never comes, a task cancelled at the wrong moment) would otherwise stop every write of the
process. The watchdog logs its task's stack, invalidates its connection (SQLite rolls the
transaction back when the connection closes) and lets the next writer in; the stuck unit of
work then fails when it goes on.
"""

from __future__ import annotations

import asyncio
import io
from collections import deque
from dataclasses import dataclass, field

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

log = structlog.get_logger()


@dataclass(eq=False)
class Hold:
    """The gate, held by one unit of work."""

    task: asyncio.Task[object] | None
    since: float
    connection: AsyncConnection | None = None
    broken: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class WriteGate:
    def __init__(self, hold_limit: float) -> None:
        self.hold_limit = hold_limit
        self._holder: Hold | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._breaking: set[asyncio.Task[None]] = set()

    @property
    def holder(self) -> Hold | None:
        return self._holder

    @property
    def waiting(self) -> int:
        """Writers queued behind the holder."""
        return len(self._waiters)

    async def acquire(self) -> Hold:
        task = asyncio.current_task()
        holder = self._holder
        if holder is not None and holder.task is task and task is not None:
            # It would wait for itself: SQLite has one write transaction per file.
            raise RuntimeError("a write unit of work opened inside another on SQLite")
        if self._holder is not None or self._waiters:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._pass_on()  # it was ours already: hand it to the next in line
                else:
                    self._waiters.remove(waiter)
                raise
        loop = asyncio.get_running_loop()
        hold = Hold(task, loop.time())
        self._holder = hold
        if self.hold_limit > 0:
            hold.timer = loop.call_later(self.hold_limit, self._overdue, hold)
        return hold

    def release(self, hold: Hold) -> None:
        if hold.timer is not None:
            hold.timer.cancel()
        if self._holder is hold:
            self._pass_on()

    def _pass_on(self) -> None:
        self._holder = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                # Reserved for this waiter until it runs: nobody may slip in meanwhile.
                self._holder = _RESERVED
                return

    def _overdue(self, hold: Hold) -> None:
        if self._holder is not hold:
            return
        held = asyncio.get_running_loop().time() - hold.since
        log.error(
            "sqlite_writer_stuck",
            held_seconds=round(held, 1),
            limit_seconds=self.hold_limit,
            task=hold.task.get_name() if hold.task is not None else None,
            stack=_stack(hold.task),
        )
        hold.broken = True
        breaking = asyncio.create_task(self._break(hold))
        self._breaking.add(breaking)
        breaking.add_done_callback(self._breaking.discard)

    async def _break(self, hold: Hold) -> None:
        try:
            if hold.connection is not None and not hold.connection.invalidated:
                driver = hold.connection.sync_connection
                raw = driver.connection.driver_connection if driver is not None else None
                interrupt = getattr(raw, "interrupt", None)
                if interrupt is not None:
                    await interrupt()  # a statement still running stops now
                await hold.connection.invalidate()
        except Exception:
            log.exception("sqlite_writer_break_failed")
        finally:
            if self._holder is hold:
                self._pass_on()


# Stands for a writer that was handed the gate and has not run yet.
_RESERVED = Hold(None, 0.0)


def _stack(task: asyncio.Task[object] | None) -> str:
    if task is None:
        return ""
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()
