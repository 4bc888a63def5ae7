"""The job queue's state, for dashboards and autoscalers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from taskgate.clock import utcnow
from taskgate.governance.access import may
from taskgate.http.auth import CurrentPrincipal, Session
from taskgate.openapi import errors
from taskgate.queue.schemas import QueueOverview
from taskgate.queue.service import queue_overview
from taskgate.schedules.service import queue_summary as schedule_summary
from taskgate.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["queue"])


@router.get("/queue", responses=errors(401, 404, 429))
async def get_queue(
    request: Request,
    session: Session,
    principal: CurrentPrincipal,
    include_finished: Annotated[
        bool,
        Query(description="Also count retained done, failed, dead and cancelled jobs (slower)."),
    ] = False,
) -> QueueOverview:
    """Depth by state and priority, the oldest ready job's wait, and the workers alive with
    their capacity (the worker list itself is for administrators)."""
    settings: Settings = request.app.state.settings
    overview = await queue_overview(
        session,
        principal,
        lease_seconds=settings.worker.lease_seconds,
        include_finished=include_finished,
    )
    if may(principal, "schedule:read", principal.project_id):
        overview.schedules = await schedule_summary(session, principal, utcnow())
    return overview
