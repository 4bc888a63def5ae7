"""Fixtures for task tests: two users, so ownership is always tested against someone."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from taskgate.jobs import Worker
from taskgate.settings import Settings
from tests.support.clients import User, create_user, running_app


@pytest.fixture
async def alice(client: httpx.AsyncClient, admin: User) -> User:
    return await create_user(client, admin, "alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient, admin: User) -> User:
    return await create_user(client, admin, "bob")


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    """A data dir the sandbox uid can reach (pytest's own tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="taskgate-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def worker_app(
    settings_factory: Callable[..., Settings], data_dir: Path, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app running an in-process worker that executes tasks in ``data_dir``."""
    settings = settings_factory(**overrides).model_copy(update={"data_dir": data_dir})
    async with running_app(settings, [Worker(concurrency=4)]) as pair:
        yield pair
