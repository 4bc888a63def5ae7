"""Live streams: Server-Sent Events per subject or by filter, and WebSocket channels."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, status

from taskgate.auth.principal import Authenticator, Principal
from taskgate.errors import ValidationFailed
from taskgate.events import subjects
from taskgate.events.bus import EventBus
from taskgate.events.filters import StreamSpec, TypeFilter
from taskgate.events.schemas import EventOut, StreamTicketOut
from taskgate.events.sse import EventStreamResponse
from taskgate.events.streams import EventStream
from taskgate.events.websocket import serve_websocket
from taskgate.events.wire import MAX_EVENT_ID
from taskgate.http.auth import CurrentPrincipal, Session, StreamPrincipal
from taskgate.identity import stream_tickets
from taskgate.openapi import errors

router = APIRouter(prefix="/api/v1", tags=["streams"])

_SSE_DOC = (
    "Server-Sent Events. Frames `id: <event id>`, `event: <type>`, `data: <EventOut JSON>`; "
    'a `: ping` comment while idle; a final `event: done` with `{"reason": <type>}` when the '
    "subject ends. Resume with the `Last-Event-ID` header or `last_event_id`: every event "
    "after it is sent once, in id order. Authenticate with a header, or with "
    "`?ticket=` from `POST /api/v1/stream/tickets` where headers cannot be set."
)
# One frame as an SSE parser hands it over (``itemSchema``, as OpenAPI 3.2 and FastAPI's own
# event streams document it); the `: ping` comments are not frames.
_FRAME: dict[str, Any] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event id."},
        "event": {"type": "string", "description": "The event type, or `done`."},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "anyOf": [
                    EventOut.model_json_schema(),
                    {
                        "title": "Done",
                        "type": "object",
                        "required": ["reason"],
                        "properties": {"reason": {"type": "string"}},
                    },
                ]
            },
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}
_STREAM = {"type": "array", "items": _FRAME}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/event-stream": {"schema": _STREAM, "itemSchema": _FRAME}},
        "description": "An event stream.",
    },
    **errors(400, 401, 403, 404, 429),
}


async def _subject_finders(request: Request) -> subjects.Subjects:
    """Where streams find their subjects: built with the app (``create_app``)."""
    found: subjects.Subjects = request.app.state.stream_subjects
    return found


SubjectFinders = Annotated[subjects.Subjects, Depends(_subject_finders)]
LastEventHeader = Annotated[str | None, Header(alias="Last-Event-ID")]
LastEventQuery = Annotated[
    int | None, Query(ge=0, le=MAX_EVENT_ID, description="Resume after this event id.")
]
TypesQuery = Annotated[
    str | None, Query(description="Comma-separated event types; `task.*` matches a prefix.")
]


def _resume(header: str | None, query: int | None) -> int | None:
    """The header wins: EventSource sends it on reconnect, the URL keeps the first value."""
    if header is None or not header.strip():
        return query
    value = header.strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_EVENT_ID:
        raise ValidationFailed.field(
            "Last-Event-ID", f"a non-negative integer event id, at most {MAX_EVENT_ID}"
        )
    return int(value)


def _respond(
    request: Request, principal: Principal, spec: StreamSpec, after: int | None
) -> EventStreamResponse:
    bus: EventBus = request.app.state.bus
    stream = EventStream(bus, spec, after)
    slot = bus.slots.acquire(principal.user_id)
    return EventStreamResponse(stream, slot, direct=bus.settings.streams.direct_writes)


@router.get(
    "/stream/sse",
    response_class=EventStreamResponse,
    status_code=200,
    responses=_RESPONSES,
    description=_SSE_DOC + " Without a subject filter the stream starts now.",
)
async def stream_sse(
    request: Request,
    principal: StreamPrincipal,
    finders: SubjectFinders,
    last_event_header: LastEventHeader = None,
    task_id: uuid.UUID | None = None,
    run_id: uuid.UUID | None = None,
    execution_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    workflow_id: uuid.UUID | None = None,
    types: TypesQuery = None,
    last_event_id: LastEventQuery = None,
) -> EventStreamResponse:
    after = _resume(last_event_header, last_event_id)
    spec = await subjects.filtered_stream(
        finders,
        principal,
        task_id=task_id,
        run_id=run_id,
        execution_id=execution_id,
        session_id=session_id,
        workflow_id=workflow_id,
        types=TypeFilter.parse(types),
    )
    return _respond(request, principal, spec, after)


@router.get(
    "/tasks/{task_id}/stream",
    response_class=EventStreamResponse,
    status_code=200,
    responses=_RESPONSES,
    description=_SSE_DOC,
)
async def stream_task(
    request: Request,
    principal: StreamPrincipal,
    finders: SubjectFinders,
    task_id: uuid.UUID,
    last_event_header: LastEventHeader = None,
    types: TypesQuery = None,
    last_event_id: LastEventQuery = None,
) -> EventStreamResponse:
    after = _resume(last_event_header, last_event_id)
    spec = await subjects.task_stream(finders, principal, task_id, TypeFilter.parse(types))
    return _respond(request, principal, spec, after)


@router.get(
    "/runs/{run_id}/events",
    response_class=EventStreamResponse,
    status_code=200,
    responses=_RESPONSES,
    description=_SSE_DOC + " Ends when the run, or the task it belongs to, ends.",
)
async def stream_run(
    request: Request,
    principal: StreamPrincipal,
    finders: SubjectFinders,
    run_id: uuid.UUID,
    last_event_header: LastEventHeader = None,
    types: TypesQuery = None,
    last_event_id: LastEventQuery = None,
) -> EventStreamResponse:
    after = _resume(last_event_header, last_event_id)
    spec = await subjects.run_stream(finders, principal, run_id, TypeFilter.parse(types))
    return _respond(request, principal, spec, after)


@router.get(
    "/executions/{execution_id}/stream",
    response_class=EventStreamResponse,
    status_code=200,
    responses=_RESPONSES,
    description=_SSE_DOC,
)
async def stream_execution(
    request: Request,
    principal: StreamPrincipal,
    finders: SubjectFinders,
    execution_id: uuid.UUID,
    last_event_header: LastEventHeader = None,
    types: TypesQuery = None,
    last_event_id: LastEventQuery = None,
) -> EventStreamResponse:
    after = _resume(last_event_header, last_event_id)
    spec = await subjects.execution_stream(
        finders, principal, execution_id, TypeFilter.parse(types)
    )
    return _respond(request, principal, spec, after)


@router.post("/stream/tickets", status_code=status.HTTP_201_CREATED, responses=errors(401, 429))
async def create_stream_ticket(
    request: Request, session: Session, principal: CurrentPrincipal
) -> StreamTicketOut:
    """A single-use ticket for one stream connection (`?ticket=` on the SSE endpoints and
    the WebSocket), valid for a few seconds, with the caller's identity and scopes: so a
    browser need not put an API key or token in a URL."""
    authenticator: Authenticator = request.app.state.authenticator
    seconds = request.app.state.bus.settings.streams.ticket_seconds
    issued = await stream_tickets.issue(session, authenticator, principal, seconds)
    return StreamTicketOut(ticket=issued.ticket, expires_at=issued.expires_at)


@router.websocket("/stream/ws")
async def stream_ws(websocket: WebSocket) -> None:
    await serve_websocket(websocket)


@router.websocket("/streams")
async def streams_ws(websocket: WebSocket) -> None:
    await serve_websocket(websocket)
