"""Worker nodes: each worker process keeps a row saying what it runs and that it is alive."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.clock import utcnow
from taskgate.models import Node

nodes: Table = Node.__table__  # type: ignore[assignment]


class NodeStatus(StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"
    STOPPED = "stopped"


async def register(
    session: AsyncSession,
    node_id: str,
    *,
    kinds: list[str],
    concurrency: int,
    capabilities: dict[str, Any],
) -> None:
    now = utcnow()
    await session.execute(
        insert(nodes).values(
            id=node_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            kinds=kinds,
            concurrency=concurrency,
            capabilities=capabilities,
            status=NodeStatus.ACTIVE.value,
            started_at=now,
            heartbeat_at=now,
        )
    )


async def heartbeat(
    session: AsyncSession,
    node_id: str,
    status: NodeStatus,
    capabilities: dict[str, Any],
) -> bool:
    """Refresh the node's row; False if it is gone (pruned while this process was stuck)."""
    result = await session.execute(
        update(nodes)
        .where(nodes.c.id == node_id)
        .values(heartbeat_at=utcnow(), status=status.value, capabilities=capabilities)
        .returning(nodes.c.id)
    )
    return result.first() is not None


async def prune(session: AsyncSession, silent_since: datetime) -> None:
    """Forget nodes that have not heartbeaten since ``silent_since`` (stopped or crashed)."""
    await session.execute(delete(nodes).where(nodes.c.heartbeat_at < silent_since))
