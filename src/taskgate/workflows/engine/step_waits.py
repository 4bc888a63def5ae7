"""The ``task`` node: submit a taskgate task once, then follow it until it ends.

The task is created in the same transaction that stores its id on the step, so a step that
is re-run after a crash follows the task it already started instead of starting another.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.models import Task, TaskJob, User, WorkflowExecution
from taskgate.runtime.context import Runtime
from taskgate.settings import Settings
from taskgate.tasks.intake import Accepted
from taskgate.tasks.schemas import ScriptIn, TaskCreate
from taskgate.tasks.service import submit_task
from taskgate.tasks.states import TaskStatus, is_final
from taskgate.workflows.definitions.graph import Node
from taskgate.workflows.engine.nodes_runtime import NodeFailure, NodeResult, Wait

POLL_MIN_SECONDS = 0.2
POLL_MAX_SECONDS = 5.0


def _labels(raw: Any) -> list[str]:
    if isinstance(raw, dict):
        return [f"{key}={value}"[:64] for key, value in raw.items()]
    return [str(label) for label in raw or []]


async def start_task(
    session: AsyncSession,
    settings: Settings,
    owner: User,
    execution: WorkflowExecution,
    config: dict[str, Any],
) -> Accepted:
    principal = Principal(owner.id, owner.username, owner.is_admin, project_id=execution.project_id)
    script = config.get("script")
    body = TaskCreate(
        query=config.get("query"),
        script=ScriptIn(**script) if script else None,
        commands=config.get("commands"),
        timeout_seconds=config.get("timeout_seconds"),
        labels=_labels(config.get("labels")),
        context={
            "workflow_id": str(execution.workflow_id),
            "execution_id": str(execution.id),
        },
    )
    return await submit_task(session, principal, body, settings)


async def poll_task(
    runtime: Runtime, task_id: uuid.UUID, started_at: datetime, node: Node
) -> NodeResult | Wait:
    """The step's result once the task ended; otherwise when to look again."""
    async with runtime.db.transaction(write=False) as session:
        task = await session.get(Task, task_id)
        exit_code = await session.scalar(
            select(TaskJob.exit_code)
            .where(TaskJob.task_id == task_id)
            .order_by(TaskJob.created_at.desc())
            .limit(1)
        )
    if task is None:
        raise NodeFailure(f"task {task_id} no longer exists")
    now = utcnow()
    if is_final(task.status):
        output = {
            "task_id": str(task.id),
            "status": task.status,
            "result": task.result,
            "exit_code": exit_code,
            "error": task.error,
        }
        if task.status == TaskStatus.COMPLETED.value:
            return NodeResult(output)
        detail = f": {task.error}" if task.error else ""
        raise NodeFailure(
            f"task {task.id} ended {task.status}{detail}",
            retryable=task.status != TaskStatus.CANCELLED.value,
        )
    if node.timeout_seconds is not None and now - started_at > timedelta(
        seconds=node.timeout_seconds
    ):
        raise NodeFailure(f"the task did not end within {node.timeout_seconds:g} s")
    elapsed = (now - started_at).total_seconds()
    delay = min(POLL_MAX_SECONDS, max(POLL_MIN_SECONDS, elapsed / 4))
    status = "WAITING" if task.status == TaskStatus.WAITING_APPROVAL.value else "RUNNING"
    return Wait(now + timedelta(seconds=delay), status)
