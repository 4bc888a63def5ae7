"""What waits on an approval, and how it resumes once the approval is decided or expires.

The features that ask for approvals say how their waiter resumes, by approval kind: a task's
tool call (``task_tool``: ``tasks/service.py:resume_waiting_task``) and a workflow step
(``workflow_step``: ``workflows/engine/advance.py:resume_waiting_step``). ``taskgate/jobs.py:
approval_waiters`` gathers them; the app holds them for decisions (``app.state.approval_waiters``)
and the ``approval.expire`` job for expiries. So approvals import neither feature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.models import Approval

TASK_TOOL = "task_tool"
WORKFLOW_STEP = "workflow_step"

# Runs in the transaction that decided or expired the approval.
Resume = Callable[[AsyncSession, Approval], Awaitable[None]]


@dataclass(frozen=True)
class Waiters:
    by_kind: Mapping[str, Resume]

    async def resume(self, session: AsyncSession, approval: Approval) -> None:
        resume = self.by_kind.get(approval.kind)
        if resume is None:
            raise LookupError(f"nothing resumes {approval.kind!r} approvals")
        await resume(session, approval)
