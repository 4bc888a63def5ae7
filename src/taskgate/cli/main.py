"""The `taskgate` command: one Typer app, its commands gathered from this package."""

from __future__ import annotations

import typer

from taskgate import __version__
from taskgate.cli import server
from taskgate.cli.accounts import keys_app, users_app
from taskgate.cli.console import console
from taskgate.cli.tasks import tasks_app
from taskgate.data_dir import restrict_new_files

app = typer.Typer(
    help="taskgate: tasks, sandboxed scripts, AI agents and workflows behind one API.",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="api-keys")
app.add_typer(tasks_app, name="tasks")
for command in (server.migrate, server.serve, server.worker, server.scheduler):
    app.command()(command)


@app.callback()
def main() -> None:
    """taskgate: tasks, sandboxed scripts, AI agents and workflows behind one API."""
    # Before anything is opened: the files this process creates (the database, its WAL, the
    # secret, sandbox output) are then its owner's only, whatever the shell's umask.
    restrict_new_files()


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)
