"""Every router the gateway serves, in one list."""

from __future__ import annotations

from fastapi import APIRouter

from taskgate.ops.endpoints import router as ops_router


def routers() -> list[APIRouter]:
    from taskgate.audit.endpoints import router as audit_router
    from taskgate.destinations.endpoints import router as destinations_router
    from taskgate.events.endpoints import router as events_router
    from taskgate.governance.endpoints import router as projects_router
    from taskgate.governance.group_endpoints import router as groups_router
    from taskgate.governance.role_endpoints import router as roles_router
    from taskgate.identity.endpoints import router as identity_router
    from taskgate.queue.endpoints import router as queue_router
    from taskgate.runs.endpoints import router as runs_router
    from taskgate.schedules.endpoints import router as schedules_router
    from taskgate.tasks.endpoints import router as tasks_router
    from taskgate.workflows.routes import routers as workflow_routers

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
        *workflow_routers(),
    ]
