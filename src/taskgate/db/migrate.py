"""Apply and inspect migrations programmatically (``taskgate migrate`` and at serve start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgate.db.engine import sqlite_write_transaction

_INI = Path(__file__).with_name("alembic.ini")


def alembic_config() -> Config:
    config = Config(str(_INI))
    config.set_main_option("script_location", str(_INI.parent / "migrations"))
    return config


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision of every branch."""

    def _upgrade(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")

    writing = sqlite_write_transaction.set(True)  # BEGIN IMMEDIATE: it reads, then writes
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
    finally:
        sqlite_write_transaction.reset(writing)


async def pending_revisions(engine: AsyncEngine) -> set[str]:
    """Script heads the database has not reached; empty when migrations are current."""
    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())

    def _current(connection: Connection) -> set[str]:
        return set(MigrationContext.configure(connection).get_current_heads())

    async with engine.connect() as connection:
        current = await connection.run_sync(_current)
    return heads - current
