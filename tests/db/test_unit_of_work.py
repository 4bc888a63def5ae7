"""One request, one transaction: a request that fails after writing leaves nothing behind,
and what must outlive a refusal is written after the rollback."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from taskgate.db.session import Database, on_commit, on_rollback
from taskgate.errors import Conflict
from taskgate.http.auth import CurrentPrincipal, Session
from taskgate.identity.schemas import UserCreate
from taskgate.identity.user_service import create_user
from taskgate.models import AuditRecord, User
from tests.identity.api import audit_records
from tests.support.clients import User as Caller
from tests.support.clients import create_user as create_user_via_api


async def _count(db: Database, model: type[User] | type[AuditRecord], **where: str) -> int:
    stmt = select(func.count()).select_from(model)
    for column, value in where.items():
        stmt = stmt.where(getattr(model, column) == value)
    async with db.transaction(write=False) as session:
        return int(await session.scalar(stmt) or 0)


async def test_a_write_followed_by_a_failure_is_rolled_back(
    app: FastAPI, client: httpx.AsyncClient, admin: Caller
) -> None:
    @app.post("/api/v1/test/create-then-fail")
    async def create_then_fail(session: Session, principal: CurrentPrincipal) -> None:
        body = UserCreate(username="ghost", password="ghost-password")
        await create_user(session, principal, body)  # flushed: the row and its audit exist
        raise Conflict("changed my mind")

    db: Database = app.state.db
    audited = await _count(db, AuditRecord, action="user.create")
    response = await client.post("/api/v1/test/create-then-fail", headers=admin.headers)
    assert response.status_code == 409
    assert await _count(db, User, username="ghost") == 0
    assert await _count(db, AuditRecord, action="user.create") == audited
    listed = await client.get("/api/v1/users?search=ghost", headers=admin.headers)
    assert listed.json()["results"] == []


async def test_a_duplicate_user_leaves_no_row_and_no_audit(
    app: FastAPI, client: httpx.AsyncClient, admin: Caller
) -> None:
    await create_user_via_api(client, admin, "olga")
    before = await audit_records(client, admin, action="user.create")
    clash = await client.post(
        "/api/v1/users", json={"username": "olga", "password": "x" * 12}, headers=admin.headers
    )
    assert clash.status_code == 409
    assert await _count(app.state.db, User, username="olga") == 1
    assert await audit_records(client, admin, action="user.create") == before


async def test_a_patch_refused_halfway_changes_nothing(
    client: httpx.AsyncClient, admin: Caller
) -> None:
    # The email is assigned before the refusal of the second field is noticed.
    response = await client.patch(
        f"/api/v1/users/{admin.id}",
        json={"email": "new@example.com", "is_admin": False},
        headers=admin.headers,
    )
    assert response.status_code == 400
    me = (await client.get("/api/v1/users/me", headers=admin.headers)).json()
    assert me["user"]["email"] is None
    assert me["user"]["is_admin"] is True
    assert await audit_records(client, admin, action="user.update") == []


async def test_hooks_run_after_commit_or_after_rollback_only(app: FastAPI) -> None:
    db: Database = app.state.db
    ran: list[str] = []

    async def committed() -> None:
        ran.append("committed")

    async def rolled_back() -> None:
        # A unit of work of its own, while the failed one's locks are gone (SQLite too).
        async with db.transaction() as session:
            session.add(User(username="kept", password_hash="x"))
        ran.append("rolled back")

    async with db.transaction() as session:
        on_commit(session, committed)
        on_rollback(session, rolled_back)
        session.add(User(username="first", password_hash="x"))
    assert ran == ["committed"]

    async def write_then_fail() -> None:
        async with db.transaction() as session:
            on_commit(session, committed)
            on_rollback(session, rolled_back)
            session.add(User(username="lost", password_hash="x"))
            await session.flush()
            raise RuntimeError("fail after writing")

    with pytest.raises(RuntimeError, match="fail after writing"):
        await write_then_fail()
    assert ran == ["committed", "rolled back"]
    assert await _count(db, User, username="lost") == 0
    assert await _count(db, User, username="kept") == 1
