"""What the workflow engine plugs into the app and the worker: its routers and job kinds."""

from __future__ import annotations

from fastapi import APIRouter

from taskgate.runtime.handlers import JobKind


def routers() -> list[APIRouter]:
    from taskgate.approvals.endpoints import router as approvals_router
    from taskgate.triggers.endpoints import router as triggers_router
    from taskgate.workflows.endpoints import router as workflows_router
    from taskgate.workflows.executions_endpoints import router as executions_router

    return [workflows_router, executions_router, triggers_router, approvals_router]


def job_kinds() -> dict[str, JobKind]:
    from taskgate.approvals.service import EXPIRE
    from taskgate.workflows.executions_service import ADVANCE, STEP
    from taskgate.workflows.executor import APPROVAL_EXPIRE, WORKFLOW_ADVANCE, WORKFLOW_STEP

    return {ADVANCE: WORKFLOW_ADVANCE, STEP: WORKFLOW_STEP, EXPIRE: APPROVAL_EXPIRE}
