"""The background parts a process runs beside (or instead of) the API."""

from __future__ import annotations

from taskgate.app import Component
from taskgate.settings import Settings

EMBEDDED_GRACE_SECONDS = 5.0


def background_components(settings: Settings, *, worker: bool, scheduler: bool) -> list[Component]:
    """Worker and scheduler loops for this process; the API's own parts come from create_app."""
    components: list[Component] = []
    if worker:
        from taskgate.destinations.dispatcher import Dispatcher
        from taskgate.runtime.worker import Worker

        # Within the ten seconds a stopping app gives each part: past its grace, the worker
        # kills its sandboxes and releases their jobs itself, before the process exits.
        components.append(Worker(grace_seconds=EMBEDDED_GRACE_SECONDS))
        components.append(Dispatcher())
    if scheduler:
        from taskgate.schedules.scheduler import SchedulerComponent

        components.append(SchedulerComponent(settings))
    return components
