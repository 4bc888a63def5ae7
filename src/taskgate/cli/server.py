"""The commands that run taskgate: migrate, serve, worker, scheduler."""

from __future__ import annotations

import asyncio
import gc
import os
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn
from rich.panel import Panel

from taskgate import __version__
from taskgate.cli.console import console
from taskgate.db.engine import create_engine
from taskgate.db.migrate import Upgrade, upgrade
from taskgate.db.session import Database
from taskgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI


async def _migrate(settings: Settings) -> Upgrade:
    engine = create_engine(settings)
    try:
        return await upgrade(engine)
    finally:
        await engine.dispose()


async def _first_admin(settings: Settings) -> None:
    from taskgate.identity.user_service import ensure_first_admin

    db = Database(create_engine(settings))
    try:
        async with db.transaction() as session:
            password = (
                settings.admin_password.get_secret_value() if settings.admin_password else None
            )
            admin = await ensure_first_admin(session, password)
    finally:
        await db.dispose()
    if admin is None:
        return
    shown = admin.password if admin.generated else "(from TASKGATE_ADMIN_PASSWORD)"
    console.print(
        Panel(
            f"username: [bold]{admin.username}[/]\npassword: [bold]{shown}[/]\n\n"
            f"Shown once. Change it with `taskgate users set-password {admin.username}`\n"
            "or POST /api/v1/users/{id}/reset-password.",
            title="taskgate: first administrator created",
        )
    )


def _sandbox_notice(settings: Settings) -> None:
    """Say at start, not at the first task, that script and command tasks will be refused."""
    from taskgate.runtime.sandbox import missing_sandbox

    problem = missing_sandbox(settings.sandbox.backend)
    if problem is not None:
        console.print(Panel(problem, title="taskgate: no sandbox", border_style="red"))


def migrate() -> None:
    """Apply database migrations."""
    settings = get_settings()
    done = asyncio.run(_migrate(settings))
    where = settings.database_url.split("@")[-1]
    if not done.applied:
        console.print(f"[green]Database is current[/] ({where}).")
    elif done.was_empty:
        console.print(
            f"[green]Created the database schema: applied {len(done.applied)} migrations[/] "
            f"({where})."
        )
    else:
        console.print(
            f"[green]Applied {len(done.applied)} migrations[/] "
            f"({', '.join(done.applied)}; {where})."
        )


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: TASKGATE_HTTP__HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: TASKGATE_HTTP__PORT).")
    ] = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only; no embedded worker or scheduler.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Run the API gateway (with an embedded worker and scheduler unless --no-worker)."""
    settings = get_settings()
    host = host or settings.http.host
    port = port or settings.http.port
    if settings.is_sqlite:
        asyncio.run(_migrate(settings))
    asyncio.run(_first_admin(settings))
    console.print(f"taskgate {__version__} on http://{host}:{port}  (docs: /docs)")
    if not no_worker:
        _sandbox_notice(settings)
    if workers > 1:
        # Worker processes build their own app: uvicorn needs an import path to do that.
        os.environ[_SERVE_BACKGROUND] = "0" if no_worker else "1"
        uvicorn.run(
            "taskgate.cli.server:serving_app",
            factory=True,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            workers=workers,
            timeout_graceful_shutdown=5,
        )
        return
    application = serving_app(background=not no_worker)
    # Open SSE streams would otherwise hold a SIGTERM'd server up indefinitely.
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


_SERVE_BACKGROUND = "_TASKGATE_SERVE_BACKGROUND"


def serving_app(background: bool | None = None) -> FastAPI:
    """The app ``serve`` runs, in this process or in each of its worker processes."""
    from taskgate.app import create_app
    from taskgate.jobs import background_components

    if background is None:
        background = os.environ.get(_SERVE_BACKGROUND, "1") == "1"
    settings = get_settings()
    components = background_components(settings, worker=background, scheduler=background)
    application = create_app(settings, components)
    # Everything loaded so far lives as long as the process: keep it out of the cyclic
    # collector, whose full passes over it would otherwise stall requests.
    gc.collect()
    gc.freeze()
    return application


def scheduler() -> None:
    """Run the scheduler alone (beside `serve --no-worker`); safe to run several on PostgreSQL."""
    from taskgate.schedules.scheduler import run_standalone

    settings = get_settings()
    if settings.is_sqlite:
        asyncio.run(_migrate(settings))
    console.print(f"taskgate {__version__} scheduler ({settings.database_url.split('@')[-1]})")
    asyncio.run(run_standalone(settings))


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs run at once (default: TASKGATE_WORKER__CONCURRENCY).")
    ] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds running jobs get to finish on SIGTERM.")
    ] = 25.0,
) -> None:
    """Run a queue worker; SIGTERM or SIGINT drains it (a second one stops at once)."""
    from taskgate.jobs import run_worker

    settings = get_settings()
    if settings.is_sqlite:
        asyncio.run(_migrate(settings))
    _sandbox_notice(settings)
    run_worker(settings, concurrency=concurrency, grace_seconds=grace)
