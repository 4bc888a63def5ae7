"""The approvals' job kind: ``approval.expire``, the timer of an approval nobody decided."""

from __future__ import annotations

import uuid

from taskgate.approvals.service import EXPIRE, expire
from taskgate.approvals.waiters import Waiters
from taskgate.runtime.context import JobContext
from taskgate.runtime.handlers import JobKind


def job_kinds(waiters: Waiters) -> dict[str, JobKind]:
    """``waiters``: what resumes once an approval expires (``taskgate/jobs.py``)."""

    async def handle_expire(ctx: JobContext) -> None:
        async with ctx.transaction() as session:
            await expire(session, uuid.UUID(ctx.payload["approval_id"]), waiters)
            await ctx.complete(session)

    return {EXPIRE: JobKind(handle_expire, timeout_seconds=120)}
