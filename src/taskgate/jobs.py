"""Every job kind in one registry, and the background parts of a process that run them.

Each feature that works in the background says what it runs in its own ``jobs.py``
(``job_kinds()``); this module gathers them, hands them to the worker, and assembles the
background parts: beside the API in ``taskgate serve`` (:func:`background_components`), or
alone in ``taskgate worker`` (:func:`run_worker`). The runtime (``taskgate/runtime/``) imports
no feature: what it runs arrives from here.
"""

from __future__ import annotations

from collections.abc import Mapping

from taskgate.approvals import jobs as approvals_jobs
from taskgate.approvals.waiters import TASK_TOOL, WORKFLOW_STEP, Waiters
from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.destinations import jobs as destinations_jobs
from taskgate.destinations.dispatcher import Dispatcher
from taskgate.events.bus import EventBus
from taskgate.logs import configure_logging
from taskgate.ops.lifecycle import Component
from taskgate.runtime import worker
from taskgate.runtime.context import Runtime
from taskgate.runtime.handlers import NOOP, JobKind
from taskgate.runtime.services import RuntimeServices
from taskgate.runtime.worker import DEFAULT_GRACE_SECONDS
from taskgate.runtime.worker_process import run_blocking, run_until_signalled
from taskgate.schedules.scheduler import SchedulerComponent
from taskgate.settings import Settings
from taskgate.tasks import jobs as tasks_jobs
from taskgate.workflows import jobs as workflows_jobs

EMBEDDED_GRACE_SECONDS = 5.0


def job_kinds() -> dict[str, JobKind]:
    """Every job kind, by the name a queue row carries (its ``kind``)."""
    return {
        "noop": NOOP,  # benchmarks and smoke checks
        **tasks_jobs.job_kinds(),
        **workflows_jobs.job_kinds(),
        **approvals_jobs.job_kinds(approval_waiters()),
        **destinations_jobs.job_kinds(),
    }


def approval_waiters() -> Waiters:
    """What resumes, by approval kind, once an approval is decided or expires."""
    return Waiters(
        {
            TASK_TOOL: tasks_jobs.resume_waiting_task,
            WORKFLOW_STEP: workflows_jobs.resume_waiting_step,
        }
    )


class Worker(worker.Worker):
    """The runtime's worker, running every registered job kind unless given ``kinds``; the
    dead-letter jobs of every kind call their ``on_dead`` hooks in it, claimed or not."""

    def __init__(
        self,
        runtime: Runtime | None = None,
        *,
        kinds: Mapping[str, JobKind] | None = None,
        concurrency: int | None = None,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        registry = job_kinds()
        super().__init__(
            runtime,
            kinds=registry if kinds is None else kinds,
            known=registry,
            concurrency=concurrency,
            grace_seconds=grace_seconds,
        )


def background_components(settings: Settings, *, worker: bool, scheduler: bool) -> list[Component]:
    """What ``taskgate serve`` runs beside the API: a worker of every job kind and the
    dispatcher of outbound deliveries, and the scheduler. The API's own parts come from
    ``create_app``."""
    components: list[Component] = []
    if worker:
        # Within the ten seconds a stopping app gives each part: past its grace, the worker
        # kills its sandboxes and releases their jobs itself, before the process exits.
        components.append(Worker(grace_seconds=EMBEDDED_GRACE_SECONDS))
        components.append(Dispatcher())
    if scheduler:
        components.append(SchedulerComponent(settings))
    return components


async def serve_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    grace_seconds: float = DEFAULT_GRACE_SECONDS,
    services: RuntimeServices | None = None,
) -> None:
    """``taskgate worker``: a worker of every job kind and the dispatcher of outbound
    deliveries, until SIGTERM or SIGINT (drain; a second signal skips the grace period)."""
    configure_logging(settings)
    db = Database(create_engine(settings))
    shared = services if services is not None else RuntimeServices(settings)
    runtime = Runtime.create(settings, db, shared)
    worker = Worker(runtime, concurrency=concurrency, grace_seconds=grace_seconds)
    # Announce this process's commits to API processes, so live streams see them at once.
    bus = EventBus(settings, db)
    await bus.open(listen=False)
    # Workers also turn committed events into outbound deliveries; one dispatcher scans at a
    # time across processes, the others stand by.
    dispatcher = Dispatcher()
    await dispatcher.open(db, settings)
    try:
        await run_until_signalled(worker, grace_seconds)
    finally:
        await dispatcher.stop()
        await bus.stop()
        if services is None:
            await shared.aclose()
        await db.dispose()


def run_worker(settings: Settings, *, concurrency: int | None, grace_seconds: float) -> None:
    """Blocking entry point of ``taskgate worker``."""
    run_blocking(serve_worker(settings, concurrency=concurrency, grace_seconds=grace_seconds))
