"""Accounts and API keys from the command line: `taskgate users ...`, `taskgate api-keys ...`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError

from taskgate.cli.console import console
from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.errors import TaskgateError
from taskgate.identity.schemas import ApiKeyCreate, PasswordReset, UserCreate
from taskgate.settings import get_settings

users_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


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

    try:
        user_id = asyncio.run(run())
    except (TaskgateError, ValidationError) as exc:
        message = exc.message if isinstance(exc, TaskgateError) else _problems(exc)
        console.print(f"[red]Cannot create user {username!r}:[/] {message}")
        raise typer.Exit(1) from exc
    console.print(f"Created user [bold]{username}[/] ({user_id}).")


@users_app.command("set-password")
def users_set_password(
    username: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Set an account's password (and sign out its sessions), e.g. the first administrator's."""
    from taskgate.identity.user_service import set_password

    async def run() -> None:
        db = Database(create_engine(get_settings()))
        try:
            async with db.transaction() as session:
                await set_password(session, username, PasswordReset(password=password).password)
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except (TaskgateError, ValidationError) as exc:
        message = exc.message if isinstance(exc, TaskgateError) else _problems(exc)
        console.print(f"[red]Cannot set the password of {username!r}:[/] {message}")
        raise typer.Exit(1) from exc
    console.print(f"Password of [bold]{username}[/] changed; its sessions are signed out.")


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


@keys_app.command("create")
def api_keys_create(
    username: Annotated[str, typer.Option("--user", help="Owner of the key.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "cli",
) -> None:
    """Create an API key for a user and print it once."""
    from taskgate.auth.principal import Principal
    from taskgate.identity import repository
    from taskgate.identity.api_key_service import create_api_key

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
