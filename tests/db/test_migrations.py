"""The migrations build exactly the schema the models declare, on both databases, and
readiness tells when they have not run or the database is gone."""

from __future__ import annotations

from pathlib import Path
from pprint import pformat
from typing import Any

import httpx
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from taskgate.models import Base
from tests.conftest import AppFactory


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": False}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(migrated: str) -> None:
    engine = create_async_engine(migrated)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == [], "migrations and models disagree:\n" + pformat(differences)


async def test_every_table_is_created_by_a_migration(migrated: str) -> None:
    engine = create_async_engine(migrated)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(sync.dialect.get_table_names(sync)))
    finally:
        await engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


async def test_ready_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get("/readiness")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_not_ready_before_migrations(app_factory: AppFactory, tmp_path: Path) -> None:
    empty = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    async with app_factory(database={"url": empty}) as (_, client):
        response = await client.get("/readiness")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "SERVICE_UNAVAILABLE"
        assert "Migrations are behind" in error["message"]
        assert (await client.get("/health")).status_code == 200


async def test_not_ready_without_a_database(app_factory: AppFactory) -> None:
    closed_port = "postgresql+asyncpg://postgres@127.0.0.1:1/taskgate"
    async with app_factory(database={"url": closed_port}) as (_, client):
        response = await client.get("/readiness")
        assert response.status_code == 503
        assert "unreachable" in response.json()["error"]["message"]
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["trace_id"] == response.headers["x-trace-id"]
        assert (await client.get("/health")).status_code == 200
