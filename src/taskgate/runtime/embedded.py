"""The background parts a process runs beside (or instead of) the API."""

from __future__ import annotations

from taskgate.app import Component
from taskgate.settings import Settings


def background_components(settings: Settings, *, worker: bool, scheduler: bool) -> list[Component]:
    """Worker and scheduler loops for this process; the API's own parts come from create_app."""
    components: list[Component] = []
    return components
