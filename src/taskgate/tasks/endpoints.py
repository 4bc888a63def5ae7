"""Task routes: submit, list, read, events, and control."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response, status

from taskgate.errors import ValidationFailed
from taskgate.governance.selection import with_body_project
from taskgate.http.auth import Session, TasksRead, TasksWrite
from taskgate.http.direct_route import DirectRoute
from taskgate.http.json_body import JsonRoute
from taskgate.http.pagination import OffsetParams, Page, PageParams, page_params
from taskgate.http.params import Instant, Position
from taskgate.openapi import errors
from taskgate.tasks import service
from taskgate.tasks.schemas import (
    ControlRequest,
    ControlResult,
    ControlState,
    EventOut,
    EventPage,
    TaskCreate,
    TaskCreated,
    TaskFilters,
    TaskList,
    TaskOut,
)
from taskgate.tasks.states import TaskStatus

router = APIRouter(prefix="/api/v1", tags=["tasks"], route_class=JsonRoute)
TaskPage = Annotated[PageParams, Depends(page_params(["created_at", "-created_at"]))]


async def submit_task(request: Request, body: TaskCreate, caller: TasksWrite) -> Response:
    # The hottest write, so it is a DirectRoute: the body is validated from its bytes, the
    # answer rendered once. There is no request transaction: the task is written by the
    # intake's group commit (or, without one, in a transaction that commits before the answer).
    state = request.app.state
    principal = await with_body_project(request.scope, caller, body.project_id, state.projects)
    task = await service.accept_task(state.db, state.task_intake, principal, body, state.settings)
    failed = task.status == TaskStatus.FAILED.value
    created = TaskCreated(
        id=task.id,
        task_id=task.id,
        status=TaskStatus.QUEUED.value if not failed else task.status,
        message=task.error if failed and task.error else "Task queued.",
        session_id=task.session_id,
        created_at=task.created_at,
    )
    headers = {"Location": f"/api/v1/tasks/{task.id}", "X-Session-ID": str(task.session_id)}
    return Response(
        created.model_dump_json(),
        status_code=status.HTTP_201_CREATED,
        headers=headers,
        media_type="application/json",
    )


router.add_api_route(
    "/tasks",
    submit_task,
    methods=["POST"],
    status_code=status.HTTP_201_CREATED,
    response_model=TaskCreated,
    responses=errors(400, 401, 403, 404, 429),
    route_class_override=DirectRoute,
)


def _statuses(raw: str | None) -> list[str]:
    if not raw:
        return []
    values = [part.strip().upper() for part in raw.split(",") if part.strip()]
    unknown = [v for v in values if v not in TaskStatus.__members__]
    if unknown:
        allowed = ", ".join(TaskStatus.__members__)
        raise ValidationFailed.field("status", f"unknown status {unknown[0]!r}; use {allowed}")
    return values


@router.get("/tasks", responses=errors(400, 401, 403))
async def list_tasks(
    session: Session,
    principal: TasksRead,
    page: TaskPage,
    status_: Annotated[
        str | None, Query(alias="status", description="Comma-separated statuses.")
    ] = None,
    session_id: uuid.UUID | None = None,
    label: str | None = None,
    created_after: Instant | None = None,
    created_before: Instant | None = None,
    search: Annotated[str | None, Query(max_length=200, description="Text in the query.")] = None,
    offset: Annotated[
        Position | None, Query(description="Shannon form: answer {tasks, total_count}.")
    ] = None,
) -> Page[TaskOut] | TaskList:
    filters = TaskFilters(
        statuses=_statuses(status_),
        session_id=session_id,
        label=label,
        created_after=created_after,
        created_before=created_before,
        search=search,
    )
    paging = page if offset is None else OffsetParams(page.limit, offset)
    return await service.list_tasks(session, principal, filters, paging)


@router.get("/tasks/{task_id}", responses=errors(401, 403, 404))
async def get_task(task_id: uuid.UUID, session: Session, principal: TasksRead) -> TaskOut:
    return TaskOut.of(await service.get_task(session, principal, task_id))


@router.get("/tasks/{task_id}/events", responses=errors(400, 401, 403, 404))
async def task_events(
    task_id: uuid.UUID,
    request: Request,
    session: Session,
    principal: TasksRead,
    after: Annotated[Position | None, Query(description="Only events after this id.")] = None,
    limit: int = 100,
    types: Annotated[str | None, Query(description="Comma-separated event types.")] = None,
) -> EventPage:
    if not 1 <= limit <= 100:
        raise ValidationFailed.field("limit", "must be between 1 and 100")
    wanted = [t.strip() for t in (types or "").split(",") if t.strip()]
    rows, more = await service.list_events(
        session, principal, task_id, after=after, limit=limit, types=wanted
    )
    next_link = None
    if more and rows:
        query = {"after": rows[-1].id, "limit": limit, **({"types": types} if types else {})}
        next_link = f"{request.url.path}?{urlencode(query)}"
    return EventPage(results=[EventOut.of(e) for e in rows], next=next_link)


@router.post(
    "/tasks/{task_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(401, 403, 404, 409),
)
async def cancel_task(
    task_id: uuid.UUID,
    request: Request,
    session: Session,
    principal: TasksWrite,
    body: ControlRequest | None = None,
) -> ControlResult:
    reason = body.reason if body else None
    settings = request.app.state.settings
    message = await service.cancel_task(session, principal, task_id, reason, settings)
    return ControlResult(success=True, message=message)


@router.post(
    "/tasks/{task_id}/pause",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(401, 403, 404, 409),
)
async def pause_task(
    task_id: uuid.UUID,
    session: Session,
    principal: TasksWrite,
    body: ControlRequest | None = None,
) -> ControlResult:
    reason = body.reason if body else None
    message = await service.pause_task(session, principal, task_id, reason)
    return ControlResult(success=True, message=message)


@router.post(
    "/tasks/{task_id}/resume",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(401, 403, 404, 409),
)
async def resume_task(
    task_id: uuid.UUID,
    session: Session,
    principal: TasksWrite,
    body: ControlRequest | None = None,
) -> ControlResult:
    reason = body.reason if body else None
    message = await service.resume_task(session, principal, task_id, reason)
    return ControlResult(success=True, message=message)


@router.get("/tasks/{task_id}/control-state", responses=errors(401, 403, 404))
async def control_state(task_id: uuid.UUID, session: Session, principal: TasksRead) -> ControlState:
    return service.control_state(await service.get_task(session, principal, task_id))
