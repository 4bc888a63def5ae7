"""A process that is not an API server writing events (in the owner's default project), as a
worker would:
``python -m tests.events.producer OWNER SESSION COUNT`` (settings from TASKGATE_* variables).
Prints the committed ids, one per line."""

from __future__ import annotations

import asyncio
import sys
import uuid

from sqlalchemy import select

from taskgate.db.engine import create_engine
from taskgate.db.session import Database
from taskgate.events.bus import EventBus
from taskgate.events.outbox import record_event
from taskgate.models import Project
from taskgate.settings import Settings


async def produce(owner: uuid.UUID, session_id: uuid.UUID, count: int) -> None:
    settings = Settings()
    db = Database(create_engine(settings))
    bus = EventBus(settings, db)
    await bus.open(listen=False)
    try:
        async with db.transaction(write=False) as session:
            project_id = await session.scalar(
                select(Project.id).where(Project.created_by == owner, Project.is_default)
            )
        for index in range(count):
            async with db.transaction() as session:
                event = await record_event(
                    session,
                    "worker.step",
                    owner_id=owner,
                    project_id=project_id,
                    session_id=session_id,
                    payload={"index": index},
                )
            print(event.id, flush=True)
            await asyncio.sleep(0.01)
    finally:
        await bus.stop()
        await db.dispose()


if __name__ == "__main__":
    owner, session_id, count = sys.argv[1:4]
    asyncio.run(produce(uuid.UUID(owner), uuid.UUID(session_id), int(count)))
