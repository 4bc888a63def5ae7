"""Every router the gateway serves, in one list; and what its streams look subjects up with."""

from __future__ import annotations

from fastapi import APIRouter

from taskgate.db.session import Database
from taskgate.events.subjects import Subjects
from taskgate.ops.endpoints import router as ops_router


def routers() -> list[APIRouter]:
    from taskgate.approvals.endpoints import router as approvals_router
    from taskgate.destinations.endpoints import router as destinations_router
    from taskgate.events.endpoints import router as events_router
    from taskgate.governance.audit_endpoints import router as audit_router
    from taskgate.governance.endpoints import router as projects_router
    from taskgate.governance.group_endpoints import router as groups_router
    from taskgate.governance.role_endpoints import router as roles_router
    from taskgate.identity.endpoints import router as identity_router
    from taskgate.queue.endpoints import router as queue_router
    from taskgate.runs.endpoints import router as runs_router
    from taskgate.schedules.endpoints import router as schedules_router
    from taskgate.tasks.endpoints import router as tasks_router
    from taskgate.triggers.endpoints import router as triggers_router
    from taskgate.workflows.definitions.endpoints import router as workflows_router
    from taskgate.workflows.executions.endpoints import router as executions_router

    return [
        ops_router,
        identity_router,
        audit_router,
        projects_router,
        groups_router,
        roles_router,
        destinations_router,
        tasks_router,
        runs_router,
        schedules_router,
        queue_router,
        events_router,
        workflows_router,
        executions_router,
        triggers_router,
        approvals_router,
    ]


def stream_subjects(db: Database) -> Subjects:
    """The services the event streams find their tasks, runs and executions with."""
    from taskgate.runs.service import get_run
    from taskgate.tasks.service import get_task
    from taskgate.workflows.executions.service import get_execution

    return Subjects(db, task=get_task, run=get_run, execution=get_execution)
