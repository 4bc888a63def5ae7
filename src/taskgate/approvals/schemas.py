"""The approvals API contract (with Shannon's decision body)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ApprovalStatus = Literal["PENDING", "APPROVED", "REJECTED", "EXPIRED", "CANCELLED"]


@dataclass(frozen=True)
class ApprovalFilters:
    """What ``GET /api/v1/approvals`` narrows the approvals the caller sees to."""

    statuses: Sequence[ApprovalStatus] = ()
    execution_id: uuid.UUID | None = None
    task_id: uuid.UUID | None = None


class ApprovalOut(BaseModel):
    id: uuid.UUID
    approval_id: uuid.UUID = Field(description="The same as id (Shannon's name).")
    kind: Literal["workflow_step", "task_tool"]
    status: ApprovalStatus
    message: str
    proposed_action: dict[str, Any]
    approvers: list[str]
    workflow_id: uuid.UUID | None
    execution_id: uuid.UUID | None
    step_id: uuid.UUID | None
    task_id: uuid.UUID | None
    expires_at: datetime | None
    decided_at: datetime | None
    decided_by: str | None
    feedback: str | None
    modified_action: dict[str, Any] | None
    created_at: datetime


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved: bool
    feedback: str | None = Field(default=None, max_length=10_000)
    modified_action: dict[str, Any] | None = Field(
        default=None, description="Replaces the proposed action when approving."
    )


class CompatDecisionRequest(DecisionRequest):
    """Shannon's ``POST /approvals/decision``: the approval named in the body."""

    workflow_id: str | None = Field(
        default=None,
        max_length=200,
        description="The task, execution or workflow the approval belongs to; checked if sent.",
    )
    approval_id: uuid.UUID
    approved_by: str | None = Field(
        default=None, max_length=150, description="Recorded alongside the authenticated user."
    )


class DecisionResult(BaseModel):
    success: bool
    message: str
    approval_id: uuid.UUID
    workflow_id: str | None
    status: ApprovalStatus
