"""Queries for approvals."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.approvals.schemas import ApprovalFilters
from taskgate.http.pagination import Listing
from taskgate.models import Approval


def approver_key(username: str) -> str:
    return f",{username.lower()},"


def encode_approvers(usernames: Sequence[str]) -> str:
    names = list(dict.fromkeys(name.strip().lower() for name in usernames if name.strip()))
    return f",{','.join(names)}," if names else ""


def decode_approvers(stored: str) -> list[str]:
    return [name for name in stored.split(",") if name]


def approvals_listing(project_id: uuid.UUID, filters: ApprovalFilters) -> Listing[Approval]:
    """A project's approvals (everyone's), narrowed by status and what they belong to."""
    stmt = select(Approval).where(Approval.project_id == project_id)
    if filters.statuses:
        stmt = stmt.where(Approval.status.in_(filters.statuses))
    if filters.execution_id is not None:
        stmt = stmt.where(Approval.execution_id == filters.execution_id)
    if filters.task_id is not None:
        stmt = stmt.where(Approval.task_id == filters.task_id)
    return Listing(stmt, {"created_at": Approval.created_at}, Approval.id)


async def approval_for_update(session: AsyncSession, approval_id: uuid.UUID) -> Approval | None:
    stmt = (
        select(Approval)
        .where(Approval.id == approval_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).first()


async def pending_for_task(session: AsyncSession, task_id: uuid.UUID) -> Approval | None:
    stmt = select(Approval).where(Approval.task_id == task_id, Approval.status == "PENDING")
    return (await session.scalars(stmt.order_by(Approval.created_at.desc()))).first()


async def cancel_pending_for_execution(session: AsyncSession, execution_id: uuid.UUID) -> None:
    await session.execute(
        update(Approval)
        .where(Approval.execution_id == execution_id, Approval.status == "PENDING")
        .values(status="CANCELLED")
        .execution_options(synchronize_session=False)
    )
