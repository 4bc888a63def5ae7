"""Schedule routes: CRUD, pause and resume, run now, skip the next occurrence, history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from taskgate.http.app_state import AppSettings
from taskgate.http.auth import SchedulesRead, SchedulesWrite, SchedulesWriteRead, Session
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import OffsetParams, Page, PageParams, page_params
from taskgate.http.params import PageNumber
from taskgate.http.preconditions import IfMatch, etag
from taskgate.openapi import errors
from taskgate.schedules import service
from taskgate.schedules.clock import SYSTEM_CLOCK, Clock
from taskgate.schedules.schemas import (
    ReasonBody,
    ScheduleCreate,
    ScheduleCreated,
    ScheduleFields,
    ScheduleFilters,
    ScheduleList,
    ScheduleOut,
    ScheduleRunOut,
    ScheduleSkipped,
    ScheduleStatus,
)

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"], route_class=JsonRoute)


def get_clock(request: Request) -> Clock:
    """The time schedules are computed against: the app's ``schedule_clock`` when one is set
    (tests move a ManualClock), else the system clock."""
    clock: Clock = getattr(request.app.state, "schedule_clock", SYSTEM_CLOCK)
    return clock


def _now(clock: Annotated[Clock, Depends(get_clock)]) -> datetime:
    return clock.now()


Now = Annotated[datetime, Depends(_now)]
ListPage = Annotated[
    PageParams, Depends(page_params(["created_at", "-created_at", "name", "-name"]))
]
RunPage = Annotated[
    PageParams,
    Depends(page_params(["scheduled_for", "-scheduled_for"], default="-scheduled_for")),
]


def _out(response: Response, schedule: ScheduleOut) -> ScheduleOut:
    response.headers["ETag"] = etag(schedule.version)
    return schedule


@router.get("", responses=errors(400, 401, 403))
async def list_schedules(
    session: Session,
    principal: SchedulesRead,
    page: ListPage,
    status_filter: Annotated[ScheduleStatus | None, Query(alias="status")] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    shannon_page: Annotated[PageNumber | None, Query(alias="page")] = None,
    page_size: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> ScheduleList:
    """The schedules of the project, everyone's. `page`/`page_size` (Shannon) answer with
    `schedules` and `total` too."""
    filters = ScheduleFilters(status=status_filter, search=search)
    paging: PageParams | OffsetParams = page
    if shannon_page is not None or page_size is not None:
        size = page_size or 50
        paging = OffsetParams(limit=size, offset=((shannon_page or 1) - 1) * size)
    return await service.list_schedules(session, principal, filters, paging)


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 401, 403, 409))
async def create_schedule(
    body: ScheduleCreate,
    session: Session,
    principal: SchedulesWrite,
    settings: AppSettings,
    now: Now,
    response: Response,
) -> ScheduleCreated:
    schedule = await service.create_schedule(session, principal, body, settings, now)
    response.headers["Location"] = f"/api/v1/schedules/{schedule.id}"
    response.headers["ETag"] = etag(schedule.version)
    return ScheduleCreated(**ScheduleOut.of(schedule).model_dump())


@router.get("/{schedule_id}", responses=errors(401, 403, 404))
async def get_schedule(
    schedule_id: uuid.UUID, session: Session, principal: SchedulesRead, response: Response
) -> ScheduleOut:
    schedule = await service.get_schedule(session, principal, schedule_id)
    return _out(response, ScheduleOut.of(schedule))


async def update_schedule(
    schedule_id: uuid.UUID,
    body: ScheduleFields,
    session: Session,
    principal: SchedulesWrite,
    settings: AppSettings,
    now: Now,
    response: Response,
    if_match: IfMatch = None,
) -> ScheduleOut:
    schedule = await service.update_schedule(
        session, principal, schedule_id, body, settings, now, if_match=if_match
    )
    return _out(response, ScheduleOut.of(schedule))


router.patch(
    "/{schedule_id}",
    responses=errors(400, 401, 403, 404, 409, 412),
    summary="Update a schedule (only the fields sent change)",
)(update_schedule)
router.put(
    "/{schedule_id}",
    responses=errors(400, 401, 403, 404, 409, 412),
    summary="Update a schedule (Shannon: partial, like PATCH)",
)(update_schedule)


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(401, 403, 404, 409, 412),
)
async def delete_schedule(
    schedule_id: uuid.UUID, session: Session, principal: SchedulesWrite, if_match: IfMatch = None
) -> Response:
    await service.delete_schedule(session, principal, schedule_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{schedule_id}/pause", responses=errors(401, 403, 404, 409))
async def pause_schedule(
    schedule_id: uuid.UUID,
    session: Session,
    principal: SchedulesWrite,
    settings: AppSettings,
    now: Now,
    response: Response,
    body: ReasonBody | None = None,
) -> ScheduleOut:
    reason = body.reason if body else None
    schedule = await service.pause_schedule(session, principal, schedule_id, reason, settings, now)
    return _out(response, ScheduleOut.of(schedule))


@router.post("/{schedule_id}/resume", responses=errors(401, 403, 404, 409))
async def resume_schedule(
    schedule_id: uuid.UUID,
    session: Session,
    principal: SchedulesWrite,
    settings: AppSettings,
    now: Now,
    response: Response,
    body: ReasonBody | None = None,
) -> ScheduleOut:
    reason = body.reason if body else None
    schedule = await service.resume_schedule(session, principal, schedule_id, reason, settings, now)
    return _out(response, ScheduleOut.of(schedule))


@router.post(
    "/{schedule_id}/trigger",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(400, 401, 403, 404, 409),
    summary="Run now (recorded as a manual fire; works while paused)",
)
async def trigger_schedule(
    schedule_id: uuid.UUID,
    session: Session,
    principal: SchedulesWriteRead,
    settings: AppSettings,
    now: Now,
) -> ScheduleRunOut:
    run = await service.trigger(session, principal, schedule_id, settings, now)
    schedule = await service.get_schedule(session, principal, schedule_id)
    return ScheduleRunOut.of(run, schedule.timezone)


@router.post("/{schedule_id}/skip-next", responses=errors(401, 403, 404, 409))
async def skip_next_occurrence(
    schedule_id: uuid.UUID,
    session: Session,
    principal: SchedulesWriteRead,
    settings: AppSettings,
    now: Now,
    response: Response,
) -> ScheduleSkipped:
    """Cancel only the next occurrence; the schedule carries on after it."""
    run = await service.skip_next(session, principal, schedule_id, settings, now)
    schedule = await service.get_schedule(session, principal, schedule_id)
    response.headers["ETag"] = etag(schedule.version)
    return ScheduleSkipped(
        skipped=ScheduleRunOut.of(run, schedule.timezone), schedule=ScheduleOut.of(schedule)
    )


@router.get("/{schedule_id}/runs", responses=errors(400, 401, 403, 404))
async def list_schedule_runs(
    schedule_id: uuid.UUID,
    session: Session,
    principal: SchedulesRead,
    page: RunPage,
    status_filter: Annotated[
        str | None, Query(alias="status", description="fired, skipped or buffered")
    ] = None,
) -> Page[ScheduleRunOut]:
    """Past occurrences: when each was due, when it fired (and how late), what it started
    and how that ended; skipped ones with the reason."""
    return await service.list_runs(session, principal, schedule_id, status_filter, page)
