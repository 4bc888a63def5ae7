"""Apply and inspect migrations programmatically (``taskgate migrate`` and at serve start)."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: the revisions it applied, oldest first."""

    applied: list[str]
    was_empty: bool  # no revision was applied before: the schema was created


async def upgrade(engine: AsyncEngine) -> Upgrade:
    """Bring the schema to the newest revision of every branch."""

    def _upgrade(connection: Connection) -> Upgrade:
        config = alembic_config()
        config.attributes["connection"] = connection
        before = MigrationContext.configure(connection).get_current_heads()
        command.upgrade(config, "heads")
        script = ScriptDirectory.from_config(config)
        newer = script.iterate_revisions("heads", before or "base")
        applied = [revision.revision for revision in newer if revision is not None]
        return Upgrade(applied[::-1], was_empty=not before)

    writing = sqlite_write_transaction.set(True)  # BEGIN IMMEDIATE: it reads, then writes
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(_upgrade)
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
