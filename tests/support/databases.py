"""Real databases for tests: a SQLite file and a fresh PostgreSQL database per run."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from taskgate.db.migrate import upgrade
from taskgate.models import Base

PG_DSN = os.environ.get("TASKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


async def _pg_admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def postgres_available(patience_seconds: float = 30.0) -> bool:
    """Whether PostgreSQL answers; a server that is starting or momentarily out of
    connection slots gets ``patience_seconds`` before it counts as unreachable."""
    deadline = time.monotonic() + patience_seconds
    while True:
        try:
            asyncio.run(_pg_admin("SELECT 1"))
        except (OSError, asyncpg.PostgresError, TimeoutError):
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)
        else:
            return True


class PostgresDatabase:
    """A database created for this test run and dropped at its end."""

    def __init__(self) -> None:
        self.name = f"taskgate_test_{uuid.uuid4().hex[:10]}"
        base, _, _ = PG_DSN.rpartition("/")
        self.dsn = f"{base}/{self.name}"
        self.url = self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    def create(self) -> None:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def postgres_or_skip() -> Iterator[PostgresDatabase]:
    if not postgres_available():
        if in_ci():
            pytest.fail(f"PostgreSQL is unreachable at {PG_DSN} and CI=true", pytrace=False)
        pytest.skip("PostgreSQL is not reachable (set CI=true to make this fatal)")
    database = PostgresDatabase()
    database.create()
    try:
        yield database
    finally:
        database.drop()


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'taskgate.db'}"


async def migrate(engine: AsyncEngine) -> None:
    await upgrade(engine)


async def wipe(engine: AsyncEngine) -> None:
    """Empty every table between tests (the schema stays, built by the migrations)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))
