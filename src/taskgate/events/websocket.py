"""WebSocket streams: one connection, many channels.

Client messages: ``{"action": "subscribe", "channel": "tasks:<id>", "last_event_id"?: N,
"types"?: "task.*"}``, ``{"action": "unsubscribe", "channel": ...}``, ``{"action": "ping"}``.
Server frames: ``{"channel", "event", "id", "payload"}`` (payload is the EventOut), acks
``{"type": "subscribed" | "unsubscribed", "channel"}``, ``{"type": "pong"}``, errors
``{"type": "error", "message", "channel"?}``. Auth: a header, ``?ticket=`` (single use, from
``POST /api/v1/stream/tickets``), or ``?token=`` (kept for compatibility). Close codes: 4401
unauthenticated, 4429 too many open streams, 1013 the client reads too slowly (reconnect and
resume with ``last_event_id``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog
from starlette.websockets import WebSocket, WebSocketState

from taskgate.auth.principal import Principal
from taskgate.errors import NotFound, RateLimited, TaskgateError, Unauthorized
from taskgate.events import subjects
from taskgate.events.bus import EventBus, StreamSlot
from taskgate.events.filters import TypeFilter
from taskgate.events.streams import EventStream
from taskgate.events.wire import MAX_EVENT_ID, EventRecord
from taskgate.http.auth import get_stream_principal

log = structlog.get_logger()
CLOSE_UNAUTHENTICATED = 4401
CLOSE_TOO_MANY_STREAMS = 4429
# The project the connection names (``?project_id=``, X-Tenant-ID) is unknown or not visible.
CLOSE_NO_PROJECT = 4404
CLOSE_TOO_SLOW = 1013
_CLOSE_TIMEOUT_SECONDS = 10.0


async def serve_websocket(websocket: WebSocket) -> None:
    bus: EventBus = websocket.app.state.bus
    try:
        principal = await get_stream_principal(websocket)
    except Unauthorized as exc:
        # A custom close code needs an accepted socket; before accept it would be a bare 403.
        await websocket.accept()
        await websocket.close(CLOSE_UNAUTHENTICATED, exc.message)
        return
    except NotFound as exc:
        await websocket.accept()
        await websocket.close(CLOSE_NO_PROJECT, exc.message)
        return
    try:
        slot = bus.slots.acquire(principal.user_id)
    except RateLimited as exc:
        await websocket.accept()
        await websocket.close(CLOSE_TOO_MANY_STREAMS, exc.message)
        return
    try:
        await websocket.accept()
        await ChannelSession(websocket, bus, principal, slot).run()
    finally:
        slot.release()


def event_frame(channel: str, event: EventRecord) -> str:
    # Built around the event's cached JSON: encoded once for every subscriber.
    return (
        f'{{"channel":{json.dumps(channel)},"event":{json.dumps(event.type)},'
        f'"id":{event.id},"payload":{event.json}}}'
    )


class ChannelSession:
    def __init__(
        self, websocket: WebSocket, bus: EventBus, principal: Principal, slot: StreamSlot
    ) -> None:
        self.websocket = websocket
        self.bus = bus
        self.subjects: subjects.Subjects = websocket.app.state.stream_subjects
        self.principal = principal
        self.slot = slot
        settings = bus.settings.streams
        self.max_channels = settings.ws_max_channels
        # Bounded: a client that stops reading is closed, not buffered for without end.
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.ws_send_queue)
        self.too_slow = asyncio.Event()
        self.channels: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        sender = asyncio.create_task(self._send())
        receiver = asyncio.create_task(self._receive())
        slow = asyncio.create_task(self.too_slow.wait())
        try:
            await asyncio.wait({sender, receiver, slow}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            tasks = [sender, receiver, slow, *self.channels.values()]
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.too_slow.is_set():
            self.slot.release()
            log.info("websocket_too_slow", user_id=str(self.principal.user_id))
            await self._close(CLOSE_TOO_SLOW, "Too slow; reconnect and resume with last_event_id.")
        elif self.websocket.client_state == WebSocketState.CONNECTED:
            await self._close(1000, "")

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(code, reason), _CLOSE_TIMEOUT_SECONDS)

    async def _send(self) -> None:
        while True:
            await self.websocket.send_text(await self.outbox.get())

    async def _receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None and message.get("bytes") is not None:
                text = message["bytes"].decode("utf-8", "replace")
            await self._handle(text or "")

    def _put(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        try:
            self.outbox.put_nowait(text)
        except asyncio.QueueFull:
            self.too_slow.set()

    def _error(self, message: str, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "message": message}
        if channel is not None:
            frame["channel"] = channel
        self._put(frame)

    async def _handle(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self._error("Messages are JSON objects with an action.")
            return
        action = message.get("action")
        if action == "ping":
            self._put({"type": "pong"})
        elif action == "subscribe":
            await self._subscribe(message)
        elif action == "unsubscribe":
            self._unsubscribe(message)
        else:
            self._error("Unknown action; use subscribe, unsubscribe or ping.")

    async def _subscribe(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        if not isinstance(channel, str) or not channel or len(channel) > 200:
            self._error("channel: a channel such as tasks:<id> or events is required.")
            return
        last = message.get("last_event_id")
        if last is not None and (
            not isinstance(last, int) or isinstance(last, bool) or not 0 <= last <= MAX_EVENT_ID
        ):
            self._error(f"last_event_id: a non-negative integer, at most {MAX_EVENT_ID}.", channel)
            return
        if channel not in self.channels and len(self.channels) >= self.max_channels:
            self._error(f"At most {self.max_channels} channels per connection.", channel)
            return
        raw_types = message.get("types")
        if isinstance(raw_types, list):
            raw_types = ",".join(str(item) for item in raw_types)
        try:
            types = TypeFilter.parse(raw_types if isinstance(raw_types, str) else None)
            spec = await subjects.channel_stream(self.subjects, self.principal, channel, types)
            stream = EventStream(self.bus, spec, last, ping=False)
        except TaskgateError as exc:
            # Someone else's subject reads exactly like a missing one. A denial is audited
            # as an HTTP request's is (taskgate.http.errors: the recorder the app binds),
            # though the connection lives on.
            recorder = getattr(self.websocket.app.state, "record_denial", None)
            if exc.denial is not None and recorder is not None:
                recorder(exc.denial)
            self._error(exc.message, channel)
            return
        previous = self.channels.pop(channel, None)
        if previous is not None:
            previous.cancel()
        await stream.__aenter__()  # subscribed before the ack: nothing after it is missed
        self._put({"type": "subscribed", "channel": channel})
        self.channels[channel] = asyncio.create_task(self._follow(channel, stream))

    def _unsubscribe(self, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        task = self.channels.pop(channel, None) if isinstance(channel, str) else None
        if task is None:
            self._error(
                "Not subscribed to this channel.", channel if isinstance(channel, str) else None
            )
            return
        task.cancel()
        self._put({"type": "unsubscribed", "channel": channel})

    async def _follow(self, channel: str, stream: EventStream) -> None:
        try:
            async for delivery in stream.deliveries():
                for event in delivery.events:
                    self._put(event_frame(channel, event))
                if delivery.done is not None:
                    done = {"reason": delivery.done}
                    self._put({"channel": channel, "event": "done", "id": None, "payload": done})
        except Exception:
            log.exception("websocket_channel_failed", channel=channel)
            self._error("This channel failed; subscribe again with last_event_id.", channel)
        finally:
            await stream.__aexit__(None, None, None)
            if self.channels.get(channel) is asyncio.current_task():
                del self.channels[channel]
