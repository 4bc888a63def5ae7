"""The projects API contract."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from taskgate.models import Project


@dataclass(frozen=True)
class ProjectFilters:
    """What ``GET /api/v1/projects`` narrows the projects the caller sees to."""

    status: Literal["active", "disabled"] | None = None
    search: str | None = None


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    slug: str | None = Field(
        default=None,
        max_length=100,
        description="Lowercase letters, digits and dashes; derived from `name` when absent.",
    )
    description: str = Field(default="", max_length=10_000)
    team: str | None = Field(default=None, max_length=200)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    team: str | None = Field(default=None, max_length=200)


class ProjectOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    status: Literal["active", "disabled"]
    team: str | None
    is_default: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, project: Project) -> ProjectOut:
        return cls(
            id=project.id,
            slug=project.slug,
            name=project.name,
            description=project.description,
            status="disabled" if project.status == "disabled" else "active",
            team=project.team,
            is_default=project.is_default,
            created_at=project.created_at,
            updated_at=project.updated_at,
        )
