"""Job kinds: the handler that runs a job, and the hook told when it dies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
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


def registered_kinds() -> dict[str, JobKind]:
    """Every job kind a worker runs by default, by name. Feature modules are imported here,
    when a worker starts, never at import time of this module."""
    kinds: dict[str, JobKind] = {"noop": NOOP}

    # ---- Feature job kinds: one import and one line per kind, e.g. ----------------------
    #   from taskgate.tasks.execution import TASK_RUN
    #   kinds["task.run"] = TASK_RUN
    from taskgate.tasks.execution import TASK_RUN

    kinds["task.run"] = TASK_RUN
    from taskgate.workflows.routes import job_kinds as workflow_job_kinds

    kinds.update(workflow_job_kinds())
    from taskgate.destinations.delivery import DELIVERY_KIND, DELIVERY_SEND

    kinds[DELIVERY_KIND] = DELIVERY_SEND
    # ---- end of feature job kinds --------------------------------------------------------

    return kinds
