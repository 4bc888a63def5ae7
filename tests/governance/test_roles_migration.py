"""The roles migration turns project members and administrators into role bindings, on a
database populated at the revision before it, and its downgrade turns them back."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from tests.db.test_project_migration import (
    _downgrade,
    _migrate,
    _populate,
    empty_database,  # noqa: F401  (a fixture)
)

BEFORE = "1000"
ROLES = "1100"


def _tables(connection: Connection) -> sa.MetaData:
    metadata = sa.MetaData()
    metadata.reflect(connection)
    return metadata


def _roles_before(connection: Connection, owners: dict[str, Any]) -> dict[str, Any]:
    """alice: an administrator, owner of her project; bob: a member of his."""
    tables = _tables(connection)
    users, members = tables.tables["users"], tables.tables["project_members"]
    connection.execute(users.update().where(users.c.id == owners["alice"]).values(is_admin=True))
    projects = {}
    for name, role in (("alice", "owner"), ("bob", "member")):
        connection.execute(
            members.update().where(members.c.user_id == owners[name]).values(role=role)
        )
        projects[name] = connection.execute(
            sa.select(members.c.project_id).where(members.c.user_id == owners[name])
        ).scalar_one()
    return projects


def _bindings(connection: Connection) -> set[tuple[str, str, str, str | None]]:
    bindings = _tables(connection).tables["role_bindings"]
    rows = connection.execute(
        sa.select(
            bindings.c.subject_type, bindings.c.subject_id, bindings.c.role, bindings.c.project_id
        )
    )
    return {(t, str(s), r, str(p) if p is not None else None) for t, s, r, p in rows}


def _members(connection: Connection) -> set[tuple[str, str, str]]:
    members = _tables(connection).tables["project_members"]
    rows = connection.execute(sa.select(members.c.user_id, members.c.project_id, members.c.role))
    return {(str(u), str(p), r) for u, p, r in rows}


def _after(connection: Connection) -> dict[str, Any]:
    tables = _tables(connection)
    keys, audit = tables.tables["api_keys"], tables.tables["audit_records"]
    state = tables.tables["governance_state"]
    return {
        "has_members": "project_members" in tables.tables,
        "key_projects": connection.execute(sa.select(keys.c.project_id)).scalars().all(),
        "subjects": connection.execute(sa.select(audit.c.subject)).scalars().all(),
        "generation": connection.execute(sa.select(state.c.generation)).scalar_one(),
    }


async def test_members_and_administrators_become_bindings_and_back(
    empty_database: str,  # noqa: F811
) -> None:
    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, [BEFORE])
            owners = await connection.run_sync(_populate)
            projects = await connection.run_sync(_roles_before, owners)
            before = await connection.run_sync(_members)
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, [ROLES])
        async with engine.connect() as connection:
            alice, bob = str(owners["alice"]), str(owners["bob"])
            assert await connection.run_sync(_bindings) == {
                ("user", alice, "owner", str(projects["alice"])),
                ("user", bob, "member", str(projects["bob"])),
                ("user", alice, "admin", None),
            }
            after = await connection.run_sync(_after)
            assert after == {
                "has_members": False,
                "key_projects": [None, None],
                "subjects": [None, None],
                "generation": 1,
            }
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade, BEFORE)
        async with engine.connect() as connection:
            assert await connection.run_sync(_members) == before
            tables = await connection.run_sync(_tables)
            assert "role_bindings" not in tables.tables
            assert "project_id" not in tables.tables["api_keys"].columns
    finally:
        await engine.dispose()
