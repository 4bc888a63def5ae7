"""The queue overview: how much work waits, how old it is, and who is there to run it."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.governance.access import may
from taskgate.queue import repository
from taskgate.queue.schemas import (
    PriorityDepth,
    ProjectWork,
    QueueDepth,
    QueueOverview,
    WorkerCapacity,
    WorkerNode,
)

# A worker that missed this many lease periods of heartbeats is presumed gone.
ALIVE_LEASES = 3


async def queue_overview(
    session: AsyncSession,
    principal: Principal,
    *,
    lease_seconds: float,
    include_finished: bool = False,
) -> QueueOverview:
    """Any authenticated user sees the counts and the total capacity (they say how long
    submitted work will wait); the request's project's unfinished tasks to whoever may read
    its tasks; which hosts run workers to the instance administrator only (not through a key
    restricted to one project)."""
    now = utcnow()
    queued = await repository.queued_groups(session, now)
    leased = await repository.leased_groups(session)
    nodes = await repository.alive_nodes(session, now - timedelta(seconds=lease_seconds * 3))

    by_priority: dict[int, PriorityDepth] = {}
    for group in queued:
        by_priority[-group.neg_priority] = PriorityDepth(
            priority=-group.neg_priority, queued=group.queued, ready=group.ready, leased=0
        )
    running: Counter[str | None] = Counter()
    for lease in leased:
        priority = -lease.neg_priority
        entry = by_priority.setdefault(
            priority, PriorityDepth(priority=priority, queued=0, ready=0, leased=0)
        )
        entry.leased += lease.leased
        running[lease.lease_owner] += lease.leased

    oldest = min((g.oldest_ready for g in queued if g.oldest_ready is not None), default=None)
    depth = QueueDepth(
        queued=sum(g.queued for g in queued),
        ready=sum(g.ready for g in queued),
        scheduled=sum(g.queued - g.ready for g in queued),
        leased=sum(running.values()),
    )
    if include_finished:
        depth = depth.model_copy(update=await repository.finished_counts(session))
    overview = QueueOverview(
        depth=depth,
        by_priority=[by_priority[p] for p in sorted(by_priority, reverse=True)],
        oldest_ready_age_seconds=(
            max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
        ),
        capacity=WorkerCapacity(
            alive=len(nodes),
            slots=sum(node.concurrency for node in nodes),
            busy=sum(running[node.id] for node in nodes),
        ),
    )
    project_id = principal.project_id
    if project_id is not None and may(principal, "task:read", project_id):
        overview.project = ProjectWork(
            project_id=project_id,
            tasks_by_status=await repository.project_tasks(session, project_id),
        )
    if principal.is_admin and principal.key_project_id is None:
        overview.workers = [
            WorkerNode(
                id=node.id,
                host=node.host,
                pid=node.pid,
                status=node.status,
                kinds=node.kinds,
                concurrency=node.concurrency,
                running=running[node.id],
                capabilities=node.capabilities,
                started_at=node.started_at,
                heartbeat_at=node.heartbeat_at,
            )
            for node in nodes
        ]
    return overview
