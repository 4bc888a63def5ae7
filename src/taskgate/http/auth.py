"""Authentication dependencies and the typed aliases endpoints declare."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ScopeCheck:
    """A dependency: the caller, once its API key is found to hold every one of ``scopes``
    (checked in order; the first missing one is the 403's message), or ``unless`` instead."""

    scopes: tuple[str, ...]
    unless: str | None = None

    async def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        self.check(principal)
        return principal

    def check(self, principal: Principal) -> None:
        if self.unless is not None and principal.has_scope(self.unless):
            return
        for scope in self.scopes:
            principal.require_scope(scope)

    def describe(self) -> str:
        names = " and ".join(f"`{scope}`" for scope in self.scopes)
        plural = "s" if len(self.scopes) > 1 else ""
        either = f" (or `{self.unless}`)" if self.unless else ""
        return f"API-key scope{plural}: {names}{either}."


def require_scope(*scopes: str, unless: str | None = None) -> ScopeCheck:
    """The dependency of a route whose API key must hold ``scopes`` (or ``unless``)."""
    return ScopeCheck(scopes, unless)


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

# The caller of a route that needs API-key scopes; a route declares its scopes with one of
# these in place of CurrentPrincipal (docs/development.md, "Add an endpoint").
TasksRead = Annotated[Principal, Depends(require_scope("tasks:read"))]
TasksWrite = Annotated[Principal, Depends(require_scope("tasks:write"))]
TasksWriteRead = Annotated[Principal, Depends(require_scope("tasks:write", "tasks:read"))]
SchedulesRead = Annotated[Principal, Depends(require_scope("schedules:read"))]
SchedulesWrite = Annotated[Principal, Depends(require_scope("schedules:write"))]
SchedulesWriteRead = Annotated[
    Principal, Depends(require_scope("schedules:write", "schedules:read"))
]
WorkflowsRead = Annotated[Principal, Depends(require_scope("workflows:read"))]
WorkflowsWrite = Annotated[Principal, Depends(require_scope("workflows:write"))]
WorkflowsReadWrite = Annotated[
    Principal, Depends(require_scope("workflows:read", "workflows:write"))
]
ExecutionsRead = Annotated[Principal, Depends(require_scope("executions:read"))]
ExecutionsWrite = Annotated[Principal, Depends(require_scope("executions:write"))]
WorkflowsRun = Annotated[
    Principal, Depends(require_scope("executions:write", unless="workflows:write"))
]
ApprovalsRead = Annotated[Principal, Depends(require_scope("approvals:read"))]
ApprovalsWrite = Annotated[Principal, Depends(require_scope("approvals:write"))]
EventsRead = Annotated[Principal, Depends(require_scope("events:read"))]
EventsWrite = Annotated[Principal, Depends(require_scope("events:write"))]
WebhooksRead = Annotated[Principal, Depends(require_scope("webhooks:read"))]
WebhooksWrite = Annotated[Principal, Depends(require_scope("webhooks:write"))]
DestinationsRead = Annotated[Principal, Depends(require_scope("destinations:read"))]
DestinationsWrite = Annotated[Principal, Depends(require_scope("destinations:write"))]
SubscriptionsRead = Annotated[Principal, Depends(require_scope("subscriptions:read"))]
SubscriptionsWrite = Annotated[Principal, Depends(require_scope("subscriptions:write"))]
UsersRead = Annotated[Principal, Depends(require_scope("users:read"))]
UsersWrite = Annotated[Principal, Depends(require_scope("users:write"))]
ApiKeysRead = Annotated[Principal, Depends(require_scope("api-keys:read"))]
ApiKeysWrite = Annotated[Principal, Depends(require_scope("api-keys:write"))]
AuditRead = Annotated[Principal, Depends(require_scope("audit:read"))]
ProjectsRead = Annotated[Principal, Depends(require_scope("projects:read"))]
ProjectsWrite = Annotated[Principal, Depends(require_scope("projects:write"))]
ProjectsWriteRead = Annotated[Principal, Depends(require_scope("projects:write", "projects:read"))]
GroupsRead = Annotated[Principal, Depends(require_scope("groups:read"))]
GroupsWrite = Annotated[Principal, Depends(require_scope("groups:write"))]
RoleBindingsRead = Annotated[Principal, Depends(require_scope("role-bindings:read"))]
RoleBindingsWrite = Annotated[Principal, Depends(require_scope("role-bindings:write"))]
AccessRulesRead = Annotated[Principal, Depends(require_scope("access-rules:read"))]
AccessRulesWrite = Annotated[Principal, Depends(require_scope("access-rules:write"))]

__all__ = [
    "CurrentPrincipal",
    "Db",
    "ScopeCheck",
    "Session",
    "StreamPrincipal",
    "get_principal",
    "get_stream_principal",
    "require_scope",
    "run_after_commit",
]
