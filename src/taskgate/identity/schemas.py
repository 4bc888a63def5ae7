"""The identity API contract."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from taskgate.http.params import Instant

Username = Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@+\-]+$")
Password = Field(min_length=8, max_length=1024)


class LoginRequest(BaseModel):
    username: str | None = Field(default=None, max_length=320)
    email: str | None = Field(default=None, max_length=320)
    password: str = Field(min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _needs_identifier(self) -> LoginRequest:
        if not (self.username or self.email):
            raise ValueError("send username or email")
        return self

    @property
    def identifier(self) -> str:
        return (self.username or self.email or "").strip()


class TokenPair(BaseModel):
    access: str
    refresh: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int


class RefreshRequest(BaseModel):
    refresh: str = Field(min_length=1, max_length=512)


class LogoutRequest(BaseModel):
    refresh: str | None = Field(default=None, max_length=512)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    username: str
    email: str | None
    is_admin: bool
    is_active: bool
    timezone: str
    created_at: datetime
    last_login_at: datetime | None


class GroupRefOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str


class SystemGrantsOut(BaseModel):
    roles: list[str] = Field(description="Roles bound at system scope (directly or by group).")
    permissions: list[str] = Field(description="What they grant, everywhere.")


class ProjectGrantsOut(BaseModel):
    project_id: uuid.UUID
    roles: list[str] = Field(description="Roles bound in the project (directly or by group).")
    permissions: list[str] = Field(
        description="Effective permissions on anything in the project: roles, system roles, "
        "access rules and the API key's scopes together."
    )
    owned_permissions: list[str] = Field(
        description="Permissions held only on what the caller created."
    )


class MeOut(BaseModel):
    user: UserOut
    roles: list[str]
    scopes: list[str]
    auth: Literal["token", "api_key"]
    api_key_id: uuid.UUID | None
    default_project_id: uuid.UUID | None
    project_id: uuid.UUID | None = Field(description="The project this request works in.")
    key_project_id: uuid.UUID | None = Field(
        description="The one project the API key is restricted to, if it is."
    )
    groups: list[GroupRefOut]
    system: SystemGrantsOut
    projects: list[ProjectGrantsOut] = Field(
        description="Per project the caller sees through a role (and the request's project): "
        "its effective roles and permissions."
    )


@dataclass(frozen=True)
class UserFilters:
    """What ``GET /api/v1/users`` narrows the users to."""

    search: str | None = None
    is_active: bool | None = None


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Username
    email: EmailStr | None = None
    password: str = Password
    is_admin: bool = False
    timezone: str = Field(default="UTC", max_length=64)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    is_admin: bool | None = None
    timezone: str | None = Field(default=None, max_length=64)


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Password


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=lambda: ["*"], max_length=50)
    project_id: uuid.UUID | None = Field(
        default=None,
        description="Restrict the key to this project (one its user sees); it then sees no "
        "other, and a request naming another is a 404.",
    )
    expires_at: Instant | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    project_id: uuid.UUID | None
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret. Shown only in this response.")


class ActionResult(BaseModel):
    success: bool = True
    message: str
