"""Job kinds: the handler that runs a job, and the hook told when it dies.

The kinds themselves belong to the features (``<feature>/jobs.py``); ``taskgate/jobs.py``
gathers them into the registry a worker runs. The runtime's own kind is ``noop``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from taskgate.runtime.context import JobContext, Runtime

JobHandler = Callable[[JobContext], Awaitable[None]]
# (runtime, job_id, kind, payload, reason): the job failed for good (PermanentFailure, or
# dead after max_attempts), so its owner can record that, e.g. mark a task FAILED.
DeadHook = Callable[[Runtime, uuid.UUID, str, dict[str, Any], str], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    """How to run one kind of job.

    A handler that returns normally has succeeded: the worker marks the job done unless the
    handler already did so with ``ctx.complete(session)`` inside ``ctx.transaction()``, which
    is how results are committed exactly once together with the outcome. Raise ``RetryLater``
    to run again later, ``PermanentFailure`` to fail without retrying; any other exception is
    retried with backoff until max_attempts. ``timeout_seconds``: the handler is cancelled
    after that long and the attempt counts as failed.
    """

    handler: JobHandler
    on_dead: DeadHook | None = None
    timeout_seconds: float | None = None


async def noop(ctx: JobContext) -> None:
    """Does nothing (benchmarks, tests, smoke checks). Payload: ``sleep_ms`` to take a while;
    ``commit: true`` to write its outcome in ``ctx.transaction()`` like a handler with results."""
    sleep_ms = ctx.payload.get("sleep_ms")
    if sleep_ms:
        await asyncio.sleep(float(sleep_ms) / 1000)
    if ctx.payload.get("commit"):
        async with ctx.transaction() as session:
            await ctx.complete(session)


NOOP = JobKind(noop)


def dead_letters(kinds: Mapping[str, JobKind]) -> JobKind:
    """The ``queue.dead_letter`` kind: a job of one of ``kinds`` that failed for good, or died,
    has its kind's ``on_dead`` hook called, so its owner hears of it even after a crash."""

    async def call_dead_hook(ctx: JobContext) -> None:
        payload = ctx.payload
        kind = kinds.get(payload["kind"])
        if kind is None or kind.on_dead is None:
            return
        await kind.on_dead(
            ctx.runtime,
            uuid.UUID(payload["job_id"]),
            payload["kind"],
            payload["payload"],
            payload["reason"],
        )

    return JobKind(call_dead_hook)
