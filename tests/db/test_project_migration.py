"""The projects migration moves every existing row into its owner's default project, on a
database populated at the revision before it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from taskgate.db.migrate import alembic_config
from tests.support.databases import postgres_or_skip, sqlite_url

BEFORE = ["0100", "0200", "0400", "0600", "0800"]
PROJECTS = "0900"
PROJECT_SLUGS = "1000"
OWNER_COLUMNS = ("owner_id", "actor_id", "user_id")
# Every table whose rows belong to a project from this revision on, and who owns each row.
IN_PROJECTS = {
    "sessions": "owner_id",
    "tasks": "owner_id",
    "runs": "owner_id",
    "jobs": "owner_id",
    "workflows": "owner_id",
    "workflow_executions": "owner_id",
    "webhook_sources": "owner_id",
    "approvals": "owner_id",
    "schedules": "owner_id",
    "destinations": "owner_id",
    "subscriptions": "owner_id",
    "events": "owner_id",
    "audit_records": "actor_id",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    for database in postgres_or_skip():
        yield database.url


def _migrate(connection: Connection, targets: list[str]) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    for target in targets:
        command.upgrade(config, target)


class _Filler:
    """Values of each reflected column's type, distinct per row (SQLite stores a UUID as
    32 hex characters and reflects the column as CHAR(32))."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        self.n = 0

    def uuid(self, value: uuid.UUID) -> Any:
        return value.hex if self.sqlite else value

    def value(self, column: sa.Column[Any]) -> Any:
        self.n += 1
        kind = column.type
        if isinstance(kind, sa.Uuid) or (self.sqlite and getattr(kind, "length", 0) == 32):
            return self.uuid(uuid.uuid4())
        if isinstance(kind, sa.Boolean):
            return False
        if isinstance(kind, sa.Integer | sa.Float | sa.Numeric):
            return self.n
        if isinstance(kind, sa.DateTime):
            return datetime(2026, 11, 1, 12, self.n % 60)
        if isinstance(kind, sa.LargeBinary):
            return b"x"
        if isinstance(kind, sa.JSON):
            return {}
        length = getattr(kind, "length", None) or 40
        return f"v{self.n}-{uuid.uuid4().hex}"[:length]


def _populate(connection: Connection) -> dict[str, Any]:
    """Users alice and bob and, in every other table, one row of each (its owner and its
    references that user's rows). Returns the users' ids by name."""
    metadata = sa.MetaData()
    metadata.reflect(connection)
    fill = _Filler(connection.dialect.name)
    owners: dict[str, Any] = {}
    users = metadata.tables["users"]
    for name in ("alice", "bob"):
        row: dict[str, Any] = {c.name: fill.value(c) for c in users.columns if not c.nullable}
        owners[name] = row["id"]
        connection.execute(users.insert().values({**row, "username": name}))
    ids: dict[tuple[str, str], Any] = {}
    for table in metadata.sorted_tables:
        if table.name in ("alembic_version", "users"):
            continue
        for name, owner in owners.items():
            row = {}
            for column in table.columns:
                if column.identity is not None or column.server_default is not None:
                    continue  # numbered by the database
                if column.name in OWNER_COLUMNS:
                    row[column.name] = owner
                elif column.foreign_keys and not column.nullable:
                    target = next(iter(column.foreign_keys)).column.table.name
                    row[column.name] = owner if target == "users" else ids[(target, name)]
                elif not column.nullable or column.primary_key:
                    row[column.name] = fill.value(column)
            result = connection.execute(table.insert().values(row))
            assert result.inserted_primary_key is not None
            ids[(table.name, name)] = result.inserted_primary_key[0]
    return owners


def _check(connection: Connection, owners: dict[str, Any]) -> None:
    metadata = sa.MetaData()
    metadata.reflect(connection)
    projects = metadata.tables["projects"]
    members = metadata.tables["project_members"]
    rows = connection.execute(
        sa.select(projects.c.id, projects.c.slug, projects.c.created_by, projects.c.is_default)
    ).all()
    assert sorted(r.slug for r in rows) == ["default-alice", "default-bob"]
    assert all(r.is_default for r in rows)
    default = {str(r.created_by): r.id for r in rows}
    assert set(default) == {str(o) for o in owners.values()}
    owned = connection.execute(sa.select(members.c.project_id, members.c.user_id, members.c.role))
    assert {(str(m.user_id), m.project_id, m.role) for m in owned} == {
        (user, project, "owner") for user, project in default.items()
    }

    with_projects = {t.name for t in metadata.sorted_tables if "project_id" in t.columns}
    assert with_projects - {"project_members"} == set(IN_PROJECTS)
    for name, owner_column in IN_PROJECTS.items():
        table = metadata.tables[name]
        found = connection.execute(sa.select(table.c[owner_column], table.c.project_id)).all()
        assert len(found) == 2, name
        for owner, project in found:
            assert project == default[str(owner)], f"{name}: a row of {owner} in {project}"


async def test_every_row_moves_to_its_owners_default_project(empty_database: str) -> None:
    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, BEFORE)
            owners = await connection.run_sync(_populate)
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, [PROJECTS])
        async with engine.connect() as connection:
            await connection.run_sync(_check, owners)
    finally:
        await engine.dispose()


def _slug_keys(connection: Connection) -> tuple[list[list[str]], list[list[str]]]:
    inspector = sa.inspect(connection)
    unique = [c["column_names"] for c in inspector.get_unique_constraints("webhook_sources")]
    indexes = [
        [str(name) for name in i["column_names"]]
        for i in inspector.get_indexes("webhook_sources")
        if i["name"] == "ix_webhook_sources_slug"
    ]
    return unique, indexes


def _downgrade(connection: Connection, target: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, target)


async def test_webhook_source_slugs_become_unique_per_project(empty_database: str) -> None:
    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_migrate, [PROJECTS])
            assert await connection.run_sync(_slug_keys) == ([["owner_id", "slug"]], [["slug"]])
            await connection.run_sync(_populate)
            await connection.run_sync(_migrate, [PROJECT_SLUGS])
            # The inbound lookup by slug, across projects, keeps its index.
            assert await connection.run_sync(_slug_keys) == ([["project_id", "slug"]], [["slug"]])
            sources = sa.text("SELECT count(*) FROM webhook_sources")
            assert (await connection.execute(sources)).scalar_one() == 2
            await connection.run_sync(_downgrade, PROJECTS)
            assert await connection.run_sync(_slug_keys) == ([["owner_id", "slug"]], [["slug"]])
    finally:
        await engine.dispose()
