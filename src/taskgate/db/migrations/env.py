"""Alembic environment: one tree for SQLite and PostgreSQL, run on an async engine."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

# The models' metadata, handed in by whoever autogenerates a migration
# (scripts/new_migration.py); applying migrations needs none, and the environment imports no
# model: the tables depend on the database layer, not the other way round.
target_metadata = context.config.attributes.get("target_metadata")


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render JSONB importably: alembic's default writes a bare ``Text()``."""
    if type_ == "type" and isinstance(obj, JSONB):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "postgresql.JSONB(astext_type=sa.Text())"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.run_sync(_run)


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = context.config.attributes["engine"]
    asyncio.run(_run_async(engine))


if context.is_offline_mode():
    raise SystemExit("taskgate migrations run online only")
run_migrations_online()
