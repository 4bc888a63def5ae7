"""A real HTTP receiver on 127.0.0.1 standing in for webhook endpoints and chat services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from taskgate.outbound.signing import SignatureError, verify_standard
from tests.support.waiting import eventually

DEADLINE_SECONDS = 15.0


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool | None  # None: no secret to check against

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers `fail_first` requests with `fail_status`, then 200 `{"ok": true}`; or the
    statuses of `script` in turn, then 200."""

    port: int = 0
    secret: str | None = None
    fail_first: int = 0
    fail_status: int = 500
    always_fail: bool = False
    script: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    connections: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def wait_for(self, count: int, timeout: float = DEADLINE_SECONDS) -> list[Received]:
        await eventually(lambda: len(self.requests) >= count, timeout=timeout)
        return self.requests

    def _respond(self) -> tuple[int, bytes]:
        if len(self.requests) <= len(self.script):
            status = self.script[len(self.requests) - 1]
            return status, b'{"ok": true}' if status < 300 else b'{"error": "scripted"}'
        failing = self.always_fail or len(self.requests) <= self.fail_first
        if failing:
            return self.fail_status, b'{"error": "try again later"}'
        return 200, b'{"ok": true}'


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 500: "Internal Server Error"}


@contextlib.asynccontextmanager
async def receiver(**options: Any) -> AsyncIterator[Receiver]:
    state = Receiver(**options)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            while True:
                try:
                    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                except asyncio.IncompleteReadError:
                    return
                method, path, _ = head.split("\r\n", 1)[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in head.split("\r\n")[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                signature_ok: bool | None = None
                if state.secret is not None:
                    try:
                        verify_standard(state.secret, headers, body, now=time.time())
                        signature_ok = True
                    except SignatureError:
                        signature_ok = False
                state.requests.append(Received(method, path, headers, body, signature_ok))
                status, payload = state._respond()
                reason = _REASONS.get(status, "Status")
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()
