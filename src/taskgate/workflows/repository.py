"""Queries for workflows, their versions, executions and steps."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.http.pagination import Listing
from taskgate.models import (
    ExecutionStep,
    Workflow,
    WorkflowExecution,
    WorkflowVersion,
)
from taskgate.workflows.schemas import ExecutionFilters, WorkflowFilters


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def workflows_listing(project_id: uuid.UUID, filters: WorkflowFilters) -> Listing[Workflow]:
    """The live workflows of a project, everyone's."""
    stmt = select(Workflow).where(Workflow.project_id == project_id, Workflow.deleted_at.is_(None))
    if filters.enabled is not None:
        stmt = stmt.where(Workflow.enabled.is_(filters.enabled))
    if filters.trigger_type is not None:
        stmt = stmt.where(Workflow.trigger_type == filters.trigger_type)
    if filters.search:
        pattern = f"%{_escape_like(filters.search.lower())}%"
        stmt = stmt.where(
            or_(
                func.lower(Workflow.name).like(pattern, escape="\\"),
                func.lower(Workflow.slug).like(pattern, escape="\\"),
            )
        )
    columns = {
        "created_at": Workflow.created_at,
        "updated_at": Workflow.updated_at,
        "name": Workflow.name,
    }
    return Listing(stmt, columns, Workflow.id)


async def live_workflow(
    session: AsyncSession, workflow_id: uuid.UUID, *, lock: bool = False
) -> Workflow | None:
    """A workflow not deleted, whoever's and wherever it is: the caller authorizes."""
    stmt = select(Workflow).where(Workflow.id == workflow_id, Workflow.deleted_at.is_(None))
    if lock:
        stmt = stmt.with_for_update()
    return (await session.scalars(stmt)).first()


async def any_workflow(session: AsyncSession, workflow_id: uuid.UUID) -> Workflow | None:
    """A workflow whether deleted or not (executions stay readable after a delete)."""
    return await session.get(Workflow, workflow_id)


async def slug_taken(
    session: AsyncSession, project_id: uuid.UUID, slug: str, *, exclude: uuid.UUID | None = None
) -> bool:
    """Whether a live workflow of the project has ``slug`` (slugs are unique per project)."""
    stmt = select(Workflow.id).where(
        Workflow.project_id == project_id, Workflow.slug == slug, Workflow.deleted_at.is_(None)
    )
    if exclude is not None:
        stmt = stmt.where(Workflow.id != exclude)
    return (await session.scalar(stmt.limit(1))) is not None


async def live_slugs_like(session: AsyncSession, project_id: uuid.UUID, prefix: str) -> set[str]:
    rows = await session.scalars(
        select(Workflow.slug).where(
            Workflow.project_id == project_id,
            Workflow.deleted_at.is_(None),
            Workflow.slug.like(f"{_escape_like(prefix)}%", escape="\\"),
        )
    )
    return set(rows.all())


def versions_listing(workflow_id: uuid.UUID) -> Listing[WorkflowVersion]:
    stmt = select(WorkflowVersion).where(WorkflowVersion.workflow_id == workflow_id)
    return Listing(stmt, {"workflow_version": WorkflowVersion.version}, WorkflowVersion.id)


async def version_of(
    session: AsyncSession, workflow_id: uuid.UUID, version: int
) -> WorkflowVersion | None:
    return (
        await session.scalars(
            select(WorkflowVersion).where(
                WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == version
            )
        )
    ).first()


async def triggered_workflows(
    session: AsyncSession, project_id: uuid.UUID, trigger_types: Sequence[str]
) -> list[Workflow]:
    """The enabled workflows of a project, everyone's, that these kinds of event trigger."""
    stmt = select(Workflow).where(
        Workflow.project_id == project_id,
        Workflow.deleted_at.is_(None),
        Workflow.enabled.is_(True),
        Workflow.trigger_type.in_(trigger_types),
    )
    return list((await session.scalars(stmt.order_by(Workflow.created_at))).all())


# executions


def executions_listing(
    project_id: uuid.UUID, filters: ExecutionFilters
) -> Listing[WorkflowExecution]:
    """The executions of a project, everyone's."""
    stmt = select(WorkflowExecution).where(WorkflowExecution.project_id == project_id)
    if filters.workflow_id is not None:
        stmt = stmt.where(WorkflowExecution.workflow_id == filters.workflow_id)
    if filters.statuses:
        stmt = stmt.where(WorkflowExecution.status.in_(filters.statuses))
    if filters.since is not None:
        stmt = stmt.where(WorkflowExecution.created_at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(WorkflowExecution.created_at <= filters.until)
    return Listing(stmt, {"created_at": WorkflowExecution.created_at}, WorkflowExecution.id)


async def execution_for_update(
    session: AsyncSession, execution_id: uuid.UUID
) -> WorkflowExecution | None:
    """The execution row, locked (PostgreSQL): advances, step results and cancels serialise
    on it, so two of them never plan from the same stale step states."""
    stmt = (
        select(WorkflowExecution)
        .where(WorkflowExecution.id == execution_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).first()


async def steps_of(session: AsyncSession, execution_id: uuid.UUID) -> list[ExecutionStep]:
    stmt = (
        select(ExecutionStep)
        .where(ExecutionStep.execution_id == execution_id)
        .order_by(ExecutionStep.created_at, ExecutionStep.id)
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


async def workflow_names(
    session: AsyncSession, workflow_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    if not workflow_ids:
        return {}
    rows = await session.execute(
        select(Workflow.id, Workflow.name).where(Workflow.id.in_(set(workflow_ids)))
    )
    return {row[0]: row[1] for row in rows.all()}
