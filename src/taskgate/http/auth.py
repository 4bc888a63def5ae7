"""Authentication dependencies and the typed aliases endpoints declare."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection
from starlette.types import Scope

from taskgate.auth.principal import INVALID_API_KEY, Authenticator, Principal
from taskgate.db.session import Database, run_after_commit
from taskgate.errors import Unauthorized
from taskgate.http.projects import request_principal

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def credential_from_scope(scope: Scope) -> str | None:
    api_key: str | None = None
    authorization: str | None = None
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
        elif name == b"authorization":
            authorization = value.decode("latin-1")
    if api_key:
        return api_key
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


async def principal_from_scope(scope: Scope, authenticator: Authenticator) -> Principal | None:
    """Resolve once per request; middleware and endpoints share the answer."""
    state = scope.setdefault("state", {})
    if "principal" in state:
        cached: Principal | None = state["principal"]
        return cached
    credential = credential_from_scope(scope)
    try:
        principal = await authenticator.resolve(credential) if credential else None
    except Unauthorized as exc:
        # A credential that is no API key is read as an access token; whoever sent it as
        # X-API-Key should still hear that the API key is wrong.
        if any(name == b"x-api-key" for name, _ in scope["headers"]):
            raise Unauthorized(INVALID_API_KEY) from exc
        raise
    state["principal"] = principal
    return principal


async def get_principal(conn: HTTPConnection) -> Principal:
    """The caller, working in the project its request names (else its default project)."""
    state = conn.scope.setdefault("state", {})
    selected: Principal | None = state.get("request_principal")
    if selected is not None:
        return selected
    authenticator: Authenticator = conn.app.state.authenticator
    resolved: Principal | None = None
    if conn.scope.get("type") == "websocket" and credential_from_scope(conn.scope) is None:
        token = conn.query_params.get("token")
        if token:
            resolved = await authenticator.resolve(token)
            state["principal"] = resolved
    if resolved is None:
        resolved = await principal_from_scope(conn.scope, authenticator)
    if resolved is None:
        raise Unauthorized()
    return await _in_project(conn, resolved)


async def get_stream_principal(conn: HTTPConnection) -> Principal:
    """A stream's caller: as any endpoint's, or by a single-use ``?ticket=`` (for browsers,
    which cannot set headers on EventSource or WebSocket)."""
    if credential_from_scope(conn.scope) is None:
        ticket = conn.query_params.get("ticket")
        if ticket:
            # identity/stream_tickets.py:redeem, bound to the app's database and authenticator.
            redeem: Callable[[str], Awaitable[Principal]] = conn.app.state.redeem_stream_ticket
            principal = await redeem(ticket)
            conn.scope.setdefault("state", {})["principal"] = principal
            return await _in_project(conn, principal)
    return await get_principal(conn)


async def _in_project(conn: HTTPConnection, principal: Principal) -> Principal:
    """``principal`` in the project its request names, resolved once per request."""
    selected = await request_principal(conn.scope, principal, conn.app.state.projects)
    conn.scope["state"]["request_principal"] = selected
    return selected


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction, committed after the endpoint returns and before the
    response is sent, so a 2xx always means committed."""
    db: Database = request.app.state.db
    async with db.transaction(write=request.method not in _READ_METHODS) as session:
        yield session


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def require_scope(scope: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require_scope(scope)
        return principal

    return dependency


async def _stream_caller(
    request: Request,
    ticket: Annotated[
        str | None,
        Query(
            description="A single-use ticket from POST /api/v1/stream/tickets, for clients "
            "that cannot send an Authorization header."
        ),
    ] = None,
) -> Principal:
    return await get_stream_principal(request)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
StreamPrincipal = Annotated[Principal, Depends(_stream_caller)]
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
Db = Annotated[Database, Depends(get_db)]

__all__ = [
    "CurrentPrincipal",
    "Db",
    "Session",
    "StreamPrincipal",
    "get_principal",
    "get_stream_principal",
    "run_after_commit",
]
