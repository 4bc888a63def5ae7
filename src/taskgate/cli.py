"""The ``taskgate`` command line."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.panel import Panel

from taskgate import __version__
from taskgate.db.engine import create_engine
from taskgate.db.migrate import upgrade
from taskgate.db.session import Database
from taskgate.identity.schemas import ApiKeyCreate, UserCreate
from taskgate.settings import Settings, get_settings

app = typer.Typer(
    help="taskgate: tasks, sandboxed scripts, AI agents and workflows behind one API.",
    no_args_is_help=True,
)
users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="api-keys")
console = Console()


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade(engine)
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
            "Shown once. Change it with the users API or `taskgate users create`.",
            title="taskgate: first administrator created",
        )
    )


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = get_settings()
    asyncio.run(_migrate(settings))
    console.print(f"[green]Database is current[/] ({settings.database_url.split('@')[-1]}).")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="API only; no embedded worker or scheduler.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Uvicorn worker processes.")] = 1,
) -> None:
    """Run the API gateway (with an embedded worker and scheduler unless --no-worker)."""
    from taskgate.app import create_app
    from taskgate.runtime.embedded import background_components

    settings = get_settings()
    if settings.is_sqlite:
        asyncio.run(_migrate(settings))
    asyncio.run(_first_admin(settings))
    components = background_components(settings, worker=not no_worker, scheduler=not no_worker)
    application = create_app(settings, components)
    console.print(f"taskgate {__version__} on http://{host}:{port}  (docs: /docs)")
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        workers=workers if workers > 1 else None,
    )


@users_app.command("create")
def users_create(
    username: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make an administrator.")] = False,
) -> None:
    """Create an account."""
    from taskgate.identity.user_service import create_user

    async def run() -> str:
        db = Database(create_engine(get_settings()))
        try:
            async with db.transaction() as session:
                user = await create_user(
                    session,
                    None,
                    UserCreate(username=username, password=password, email=email, is_admin=admin),
                )
                return str(user.id)
        finally:
            await db.dispose()

    console.print(f"Created user [bold]{username}[/] ({asyncio.run(run())}).")


@keys_app.command("create")
def api_keys_create(
    username: Annotated[str, typer.Option("--user", help="Owner of the key.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "cli",
) -> None:
    """Create an API key for a user and print it once."""
    from taskgate.identity import repository
    from taskgate.identity.api_key_service import create_api_key
    from taskgate.identity.principal import Principal

    async def run() -> str:
        db = Database(create_engine(get_settings()))
        try:
            async with db.transaction() as session:
                user = await repository.user_by_login(session, username)
                if user is None:
                    raise typer.BadParameter(f"no user {username!r}", param_hint="--user")
                principal = Principal(user.id, user.username, user.is_admin)
                _, secret = await create_api_key(session, principal, ApiKeyCreate(name=name))
                return secret
        finally:
            await db.dispose()

    console.print(asyncio.run(run()), soft_wrap=True)


if __name__ == "__main__":
    app()
