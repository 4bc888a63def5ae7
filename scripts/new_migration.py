"""Write a new migration from the difference between the models and the migrated schema.

    make migration name="add widgets"              # a new branch, for a new feature's tables
    make migration name="task labels" head=0200    # continue a feature's branch (0200: tasks)

Each feature's tables live on their own branch from 0001 (``taskgate migrate`` applies every
head). The script migrates a scratch SQLite database (or ``TASKGATE_DATABASE__URL`` when set)
to the newest revisions, compares it with ``taskgate.models`` and writes the operations alembic
finds into ``src/taskgate/db/migrations/versions/``. Read the file it prints before committing:
autogenerate misses renames and server defaults, and a JSON column wants the JSONB variant the
existing migrations use. ``tests/db/test_migrations.py`` then checks models and migrations
agree on both databases.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from taskgate.db.engine import create_engine
from taskgate.db.migrate import alembic_config, upgrade
from taskgate.models import Base
from taskgate.settings import Settings


def next_revision_id(script: ScriptDirectory, head: str | None) -> str:
    """``0201`` after ``0200`` on a branch; the next free hundred for a new branch."""
    taken = {revision.revision for revision in script.walk_revisions()}
    numbers = [int(rev) for rev in taken if rev.isdigit()]
    candidate = int(head) + 1 if head else (max(numbers, default=0) // 100 + 1) * 100
    while f"{candidate:04d}" in taken:
        candidate += 1
    return f"{candidate:04d}"


async def write_migration(name: str, head: str | None, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    engine = create_engine(settings)
    try:
        await upgrade(engine)

        def revise(connection: Connection) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            config.attributes["target_metadata"] = Base.metadata
            script = ScriptDirectory.from_config(config)
            base = head or "0001"
            command.revision(
                config,
                message=name,
                autogenerate=True,
                head=base,
                splice=base not in script.get_heads(),
                rev_id=next_revision_id(script, head),
            )

        async with engine.begin() as connection:
            await connection.run_sync(revise)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="what the migration does, e.g. 'add widgets'")
    parser.add_argument("--head", help="the branch head to continue (default: a new branch)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskgate-migration-") as scratch:
        asyncio.run(write_migration(options.name, options.head, Path(scratch)))


if __name__ == "__main__":
    main()
