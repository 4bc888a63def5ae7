"""Fixtures for task tests: two users, so ownership is always tested against someone."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from taskgate.jobs import Worker
from taskgate.settings import Settings
from tests.support.clients import running_app


@asynccontextmanager
async def worker_app(
    settings_factory: Callable[..., Settings], data_dir: Path, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app running an in-process worker that executes tasks in ``data_dir``."""
    settings = settings_factory(**overrides).model_copy(update={"data_dir": data_dir})
    async with running_app(settings, [Worker(concurrency=4)]) as pair:
        yield pair
