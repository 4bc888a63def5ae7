"""Idempotency-Key for POST: one effect per principal and key, replayed for 24 hours.

The key is claimed with a unique row before the request runs, so of two concurrent retries
exactly one executes; the other sees the claim (409 while in flight, a replay once done).
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskgate.auth.principal import Authenticator
from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.errors import Unauthorized
from taskgate.http.auth import principal_from_scope
from taskgate.http.context import client_ip_var
from taskgate.http.middleware import send_error
from taskgate.models import IdempotencyRecord

_MAX_KEY = 255
_REPLAY_MAX_BYTES = 1024 * 1024
_ABANDONED_AFTER = timedelta(minutes=15)


def _key_from(scope: Scope) -> str | None:
    request_id = None
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            return str(value.decode("latin-1")).strip() or None
        if name == b"x-request-id":
            request_id = value.decode("latin-1").strip() or None
    return request_id


class IdempotencyMiddleware:
    def __init__(
        self, app: ASGIApp, db: Database, authenticator: Authenticator, ttl_seconds: int
    ) -> None:
        self.app = app
        self.db = db
        self.authenticator = authenticator
        self.ttl = timedelta(seconds=ttl_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _key_from(scope) if scope["type"] == "http" and scope["method"] == "POST" else None
        if key is None:
            await self.app(scope, receive, send)
            return
        if len(key) > _MAX_KEY:
            await send_error(send, 400, "VALIDATION_ERROR", "Idempotency-Key is too long.")
            return
        try:
            principal = await principal_from_scope(scope, self.authenticator)
        except Unauthorized:
            await self.app(scope, receive, send)  # the route answers 401
            return
        owner = principal.key if principal else f"ip:{client_ip_var.get()}"
        body = await _read_body(receive)
        if body is None:
            return  # the client left, or the body guard cut it off and answers itself
        digest = _fingerprint(scope, body)
        record_id, existing = await self._claim(owner, key, digest)
        if existing is not None:
            await self._answer_existing(existing, digest, send)
            return
        await self._run_and_store(scope, body, send, record_id)

    async def _claim(
        self, owner: str, key: str, digest: str
    ) -> tuple[object, IdempotencyRecord | None]:
        now = utcnow()
        abandoned = now - _ABANDONED_AFTER
        for _ in range(3):
            record = IdempotencyRecord(
                principal=owner,
                key=key,
                request_hash=digest,
                created_at=now,
                expires_at=now + self.ttl,
            )
            try:
                async with self.db.transaction() as session:
                    session.add(record)
                return record.id, None
            except IntegrityError:
                async with self.db.transaction() as session:
                    existing = await session.scalar(
                        select(IdempotencyRecord).where(
                            IdempotencyRecord.principal == owner, IdempotencyRecord.key == key
                        )
                    )
                    if existing is not None and (
                        existing.expires_at <= now
                        or (existing.status_code is None and existing.created_at <= abandoned)
                    ):
                        # Expired, or claimed by a process that died before answering.
                        await session.delete(existing)
                        continue
                if existing is not None:
                    return existing.id, existing
        raise RuntimeError("could not claim idempotency key")

    async def _answer_existing(self, record: IdempotencyRecord, digest: str, send: Send) -> None:
        if record.request_hash != digest:
            await send_error(
                send,
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was used with a different request.",
            )
            return
        if record.status_code is None:
            await send_error(
                send, 409, "CONFLICT", "A request with this Idempotency-Key is still in progress."
            )
            return
        body = record.body or b""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in record.headers]
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"idempotent-replayed", b"true"))
        await send(
            {"type": "http.response.start", "status": record.status_code, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})

    async def _run_and_store(
        self, scope: Scope, body: bytes, send: Send, record_id: object
    ) -> None:
        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []
        size = 0
        replayed = False

        async def replay_receive() -> Message:
            nonlocal replayed
            if replayed:
                return {"type": "http.disconnect"}
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.extend(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.lower() not in (b"x-trace-id", b"content-length")
                    and not k.lower().startswith(b"x-ratelimit")
                )
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
                if size <= _REPLAY_MAX_BYTES:
                    chunks.append(message.get("body", b""))
            await send(message)

        stored = False
        try:
            await self.app(scope, replay_receive, capture)
            if status < 500 and size <= _REPLAY_MAX_BYTES:
                async with self.db.transaction() as session:
                    await session.execute(
                        update(IdempotencyRecord)
                        .where(IdempotencyRecord.id == record_id)
                        .values(status_code=status, headers=headers, body=b"".join(chunks))
                    )
                stored = True
        finally:
            if not stored:
                async with self.db.transaction() as session:
                    await session.execute(
                        delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id)
                    )


def _fingerprint(scope: Scope, body: bytes) -> str:
    """What makes two requests the same: method, path and body, a JSON body as parsed (its
    whitespace and key order do not matter; a body that is not JSON counts byte for byte)."""
    try:
        canonical = json.dumps(
            json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    except (ValueError, RecursionError):
        canonical = body
    request = scope["method"].encode() + b" " + scope["path"].encode() + b"\n"
    return hashlib.sha256(request + canonical).hexdigest()


async def _read_body(receive: Receive) -> bytes | None:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)
