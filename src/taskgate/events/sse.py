"""Server-Sent Events: ``id:``, ``event:``, ``data:`` frames, a comment ping while idle, and a
final ``done`` event when the subject ends."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from taskgate.events.bus import StreamSlot
from taskgate.events.streams import Delivery, EventStream
from taskgate.events.subscribers import Sink
from taskgate.events.wire import SSE_PING, sse_done

# Tells EventSource how soon to reconnect (it then sends Last-Event-ID).
PREAMBLE = b"retry: 3000\n\n"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-transform"),
    # nginx and friends would otherwise buffer the stream.
    (b"x-accel-buffering", b"no"),
]


def encode(delivery: Delivery) -> bytes:
    parts = [event.sse for event in delivery.events]
    if delivery.ping and not parts:
        parts.append(SSE_PING)
    if delivery.done is not None:
        parts.append(sse_done(delivery.done))
    return b"".join(parts)


def direct_sink(receive: Receive) -> Sink | None:
    """A writer straight to the socket, when the server is uvicorn's httptools protocol.

    The ASGI receive we get is the request cycle's own bound method (no middleware wraps
    it for a GET). Once the response has started with chunked encoding, writing a chunk to
    its transport is exactly what its ``send`` would do, minus a task switch and a pass
    through every middleware: the difference between hundreds and thousands of streams per
    process. Anything else (another server, HTTP/1.0, a paused or closed transport) gets
    None or False, and the stream goes through ``send`` as usual."""
    cycle: Any = getattr(receive, "__self__", None)
    if type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl":
        return None
    transport = getattr(cycle, "transport", None)
    flow = getattr(cycle, "flow", None)
    if transport is None or flow is None or getattr(cycle, "chunked_encoding", None) is not True:
        return None

    def write(chunk: bytes) -> bool:
        if cycle.disconnected or cycle.response_complete or flow.write_paused:
            return False
        if transport.is_closing():
            return False
        transport.write(chunk)
        return True

    return write


class EventStreamResponse(Response):
    """Streams until the subject ends, the client leaves, or the process stops.

    The stream is subscribed before the headers go out, so an event committed after the
    client sees the response start is never missed. A task watches the receive channel:
    a disconnect ends the stream at once, even while it is idle, and frees the slot."""

    media_type = "text/event-stream"

    def __init__(self, stream: EventStream, slot: StreamSlot, *, direct: bool = True) -> None:
        super().__init__(status_code=200, media_type=self.media_type)
        self.stream = stream
        self.slot = slot
        self.direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        watcher = asyncio.create_task(self._watch(receive, gone))
        try:
            async with self.stream:
                await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
                await send({"type": "http.response.body", "body": PREAMBLE, "more_body": True})
                sink = direct_sink(receive) if self.direct else None
                if sink is not None:
                    self.stream.attach(sink)
                async for delivery in self.stream.deliveries():
                    body = encode(delivery)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    if gone.is_set():
                        break
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass  # the client went away mid-write (ASGI servers may raise it from send)
        finally:
            self.slot.release()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch(self, receive: Receive, gone: asyncio.Event) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                self.stream.close()
                return
