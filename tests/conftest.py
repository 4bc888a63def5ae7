"""Fixtures: every API test runs against SQLite and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.identity.user_service import ensure_first_admin
from taskgate.settings import Settings
from tests.support.clients import ADMIN_PASSWORD, User, create_user, login, running_app
from tests.support.databases import (
    PostgresDatabase,
    migrate,
    postgres_or_skip,
    sqlite_url,
    wipe,
)
from tests.support.sandbox_dirs import sandbox_data_dir

TEST_SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabase]:
    yield from postgres_or_skip()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path_factory.mktemp("sqlite"))
    database: PostgresDatabase = request.getfixturevalue("postgres")
    return database.url


@pytest.fixture(scope="session")
async def migrated(database_url: str) -> str:
    engine = create_async_engine(database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return database_url


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "environment": "test",
        "log_json": True,
        "log_level": "WARNING",
        "database": {"url": database_url, "pool_size": 3, "max_overflow": 7},
        "auth": {"jwt_secret": TEST_SECRET},
        "rate_limit": {
            "standard": "10000/minute",
            "login": "1000/minute",
            "anonymous": "10000/minute",
        },
        "outbound": {"allow_loopback": True},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings(**values)


@pytest.fixture
async def settings_factory(migrated: str, tmp_path: Path) -> AsyncIterator[Callable[..., Settings]]:
    def factory(**overrides: Any) -> Settings:
        return make_settings(migrated, tmp_path, **overrides)

    yield factory
    engine = create_engine(factory())
    try:
        await wipe(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(create_engine(settings))
    yield database
    await database.dispose()


AppFactory = Callable[..., AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@pytest.fixture
def app_factory(settings_factory: Callable[..., Settings]) -> AppFactory:
    """Start an app with settings overrides: ``async with app_factory(http={...}) as (app, c)``."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]:
        components = overrides.pop("components", None)
        return running_app(settings_factory(**overrides), components)

    return factory


@pytest.fixture
async def app_client(
    app_factory: AppFactory,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with app_factory() as pair:
        yield pair


@pytest.fixture
def app(app_client: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return app_client[0]


@pytest.fixture
def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]


@pytest.fixture
async def admin(client: httpx.AsyncClient, app: FastAPI) -> User:
    db: Database = app.state.db
    async with db.transaction() as session:
        await ensure_first_admin(session, ADMIN_PASSWORD)
    return await login(client, "admin", ADMIN_PASSWORD)


@pytest.fixture
async def alice(client: httpx.AsyncClient, admin: User) -> User:
    """A plain user, so ownership is always tested against someone."""
    return await create_user(client, admin, "alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient, admin: User) -> User:
    return await create_user(client, admin, "bob")


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    with sandbox_data_dir() as path:
        yield path
