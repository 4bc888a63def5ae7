"""One heartbeat of a worker: keep its leases, report its state, re-register if forgotten."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from taskgate.runtime import leases, nodes
from taskgate.runtime.context import Runtime


async def beat(
    rt: Runtime,
    *,
    held: Iterable[uuid.UUID],
    draining: bool,
    kinds: Iterable[str],
    concurrency: int,
) -> None:
    """Extend the leases of ``held`` jobs and refresh this node's row in one transaction; a
    node the reaper already removed (a long pause) registers again."""
    async with rt.db.transaction() as session:
        await leases.extend(session, rt.node_id, list(held), rt.settings.worker.lease_seconds)
        status = nodes.NodeStatus.DRAINING if draining else nodes.NodeStatus.ACTIVE
        if not await nodes.heartbeat(session, rt.node_id, status, rt.capabilities):
            await nodes.register(
                session,
                rt.node_id,
                kinds=sorted(kinds),
                concurrency=concurrency,
                capabilities=rt.capabilities,
            )
