"""Stream tickets: a browser cannot set headers on an EventSource or a WebSocket, and an API
key or token in a URL ends up in logs and history. It asks (authenticated) for a ticket
instead: valid for a few seconds, good for one connection, carrying the caller's principal
and scopes. Only its hash is stored, in the database, so any API process can redeem it once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.credentials import sha256_hex
from taskgate.auth.principal import Authenticator, Principal, principal_of
from taskgate.clock import utcnow
from taskgate.db.session import Database
from taskgate.errors import Unauthorized
from taskgate.identity import repository as repo
from taskgate.ids import new_id
from taskgate.models import StreamTicket

TICKET_PREFIX = "tgst_"
_INVALID = "Invalid, expired or already used stream ticket."


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    expires_at: datetime


async def issue(
    session: AsyncSession, authenticator: Authenticator, principal: Principal, seconds: float
) -> IssuedTicket:
    auth_version: int | None = None
    if principal.api_key_id is None:
        profile = await authenticator.profile(principal.user_id)
        auth_version = profile.auth_version if profile is not None else None
    ticket = f"{TICKET_PREFIX}{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = StreamTicket(
        id=new_id(),
        token_hash=sha256_hex(ticket),
        user_id=principal.user_id,
        api_key_id=principal.api_key_id,
        scopes=sorted(principal.scopes),
        auth_version=auth_version,
        created_at=now,
        expires_at=now + timedelta(seconds=seconds),
    )
    session.add(row)
    await session.flush()
    return IssuedTicket(ticket, row.expires_at)


async def redeem(db: Database, authenticator: Authenticator, ticket: str) -> Principal:
    """The ticket's principal, once: the ticket is gone whatever the outcome."""
    async with db.transaction() as session:
        row = await repo.take_stream_ticket(session, sha256_hex(ticket))
        if row is None or row.expires_at <= utcnow():
            raise Unauthorized(_INVALID)
        # The credential it was issued from must still be good: a revoked key or session
        # voids its tickets too.
        key_project = None
        if row.api_key_id is not None:
            key = await repo.usable_api_key(session, row.api_key_id, utcnow())
            if key is None:
                raise Unauthorized(_INVALID)
            key_project = key.project_id
    profile = await authenticator.profile(row.user_id)
    if profile is None or not profile.is_active:
        raise Unauthorized(_INVALID)
    if row.auth_version is not None and row.auth_version != profile.auth_version:
        raise Unauthorized(_INVALID)
    return principal_of(profile, frozenset(row.scopes), row.api_key_id, key_project)
