"""Fixtures: a real uvicorn server per test (SQLite and PostgreSQL), and its users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from taskgate.settings import Settings
from tests.events.support import LiveServer, live_server
from tests.support.clients import User

ServerFactory = Callable[..., AbstractAsyncContextManager[LiveServer]]


@pytest.fixture
def server_factory(settings_factory: Callable[..., Settings]) -> ServerFactory:
    """``async with server_factory(streams={...}) as server``: settings overrides per test."""

    def factory(**overrides: Any) -> AbstractAsyncContextManager[LiveServer]:
        return live_server(settings_factory(**overrides))

    return factory


@pytest.fixture
async def server(server_factory: ServerFactory) -> AsyncIterator[LiveServer]:
    async with server_factory() as running:
        yield running


@pytest.fixture
async def alice(server: LiveServer) -> User:
    return await server.user("alice")


@pytest.fixture
async def bob(server: LiveServer) -> User:
    return await server.user("bob")
