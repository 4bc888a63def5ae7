"""The floor for ``bench.sse_fanout``: what writing one frame to every subscriber costs on
this machine, measured in the same run, with the same clients, as the real server.

A bare uvloop server (no framework, database or bus) answers every request with SSE
headers, then on ``go`` on stdin writes the same frames taskgate would (built by
``EventRecord``) to every open connection, RATE times a second for SECONDS: one write per
connection per event, or per batch of events when it falls behind. It prints ``done``,
and the id → due time (epoch) map as JSON.

Run as ``python -m bench._sse_floor PORT RATE SECONDS``; prints ``listening`` first."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import cast

import uvloop

from taskgate.events.wire import EventRecord

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


class _Stream(asyncio.Protocol):
    def __init__(self, open_streams: set[asyncio.Transport]) -> None:
        self.open_streams = open_streams
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it

    def data_received(self, data: bytes) -> None:
        if self.transport is not None and b"\r\n\r\n" in data:
            self.transport.write(_HEAD)
            self.open_streams.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.open_streams.discard(self.transport)


def _frame(event_id: int, owner: uuid.UUID) -> bytes:
    return EventRecord(event_id, "bench.tick", owner, datetime.now(UTC), {"index": event_id}).sse


async def _serve(port: int, rate: float, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    open_streams: set[asyncio.Transport] = set()
    server = await loop.create_server(lambda: _Stream(open_streams), "127.0.0.1", port)
    print("listening", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    owner = uuid.uuid4()
    # Latency counts from when each event was due, not from when the loop got to it, and
    # events that fell due meanwhile go out together in one write per connection: how the
    # real server catches up (one read, one chunk per stream), so a floor that falls
    # behind is measured as the server would be.
    count = int(rate * seconds)
    started = time.time()
    due = {event_id: started + (event_id - 1) / rate for event_id in range(1, count + 1)}
    sent = 0
    while sent < count:
        await asyncio.sleep(max(0.0, due[sent + 1] - time.time()))
        now = time.time()
        upto = sent + 1
        while upto < count and due[upto + 1] <= now:
            upto += 1
        body = b"".join(_frame(event_id, owner) for event_id in range(sent + 1, upto + 1))
        chunk = b"%x\r\n%b\r\n" % (len(body), body)
        for transport in open_streams:
            transport.write(chunk)
        sent = upto
    print("done", flush=True)
    print(json.dumps(due), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    server.close()


if __name__ == "__main__":
    port_arg, rate_arg, seconds_arg = sys.argv[1:4]
    uvloop.run(_serve(int(port_arg), float(rate_arg), float(seconds_arg)))
