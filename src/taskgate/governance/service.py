"""Project use cases: create (the creator becomes its owner), read, change, disable and enable."""

from __future__ import annotations

import re
import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.errors import Conflict, Forbidden, NotFound, ValidationFailed
from taskgate.governance import repository as repo
from taskgate.governance.access import authorize
from taskgate.governance.changes import changed
from taskgate.governance.schemas import ProjectCreate, ProjectFilters, ProjectOut, ProjectUpdate
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.models import Project, RoleBinding, User
from taskgate.settings import GovernanceSettings

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,98}[a-z0-9])?$")
# Default projects are "default-<username>"; no other project may take such a slug.
_RESERVED = "default-"


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80].strip("-")
    return slug or "project"


def _check_slug(slug: str) -> None:
    if not _SLUG.match(slug):
        raise ValidationFailed.field(
            "slug", "use lowercase letters, digits and dashes, starting and ending alphanumeric"
        )
    if slug.startswith(_RESERVED):
        raise ValidationFailed.field("slug", f"slugs starting {_RESERVED!r} are reserved")
    try:
        uuid.UUID(slug)
    except ValueError:
        return
    raise ValidationFailed.field("slug", "a slug may not look like a project id")


async def _free_slug(session: AsyncSession, name: str) -> str:
    base = slugify(name)
    if base.startswith(_RESERVED):
        base = f"project-{base}"[:80]
    taken = await repo.slugs_like(session, base)
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


async def list_projects(
    session: AsyncSession, principal: Principal, filters: ProjectFilters, page: PageParams
) -> Page[ProjectOut]:
    """The projects the caller may see."""
    listing = repo.projects_listing(principal, filters)
    return await page_of(session, listing, page, ProjectOut.of)


async def _add(session: AsyncSession, project: Project, owner_id: uuid.UUID) -> Project:
    session.add(project)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"The slug {project.slug!r} is taken.") from exc
    session.add(
        RoleBinding(
            subject_type="user",
            subject_id=owner_id,
            role="owner",
            project_id=project.id,
            created_by=owner_id,
        )
    )
    await session.flush()
    await changed(session)
    return project


async def create_project(
    session: AsyncSession, principal: Principal, body: ProjectCreate, settings: GovernanceSettings
) -> Project:
    if settings.project_creation == "admins" and not principal.is_admin:
        raise Forbidden("Only administrators may create projects on this instance.")
    if principal.key_project_id is not None:
        raise Forbidden("An API key restricted to one project cannot create projects.")
    if body.slug is not None:
        _check_slug(body.slug)
        if await repo.slug_taken(session, body.slug):
            raise Conflict(f"The slug {body.slug!r} is taken.")
        slug = body.slug
    else:
        slug = await _free_slug(session, body.name)
    project = await _add(
        session,
        Project(
            slug=slug,
            name=body.name,
            description=body.description,
            team=body.team,
            status="active",
            is_default=False,
            created_by=principal.user_id,
        ),
        principal.user_id,
    )
    await audit(
        session,
        "project.create",
        principal,
        resource_type="project",
        resource_id=project.id,
        detail={"slug": project.slug},
        project_id=project.id,
    )
    return project


async def create_default_project(session: AsyncSession, user: User) -> Project:
    """The project a new user's requests go to when they name none; the user owns it."""
    return await _add(
        session,
        Project(
            slug=f"{_RESERVED}{user.username}",
            name=f"{user.username}'s project",
            description="",
            status="active",
            is_default=True,
            created_by=user.id,
        ),
        user.id,
    )


async def _project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID, permission: str
) -> Project:
    project = await session.get(Project, project_id)
    if project is None:
        raise NotFound("Project not found.")
    authorize(principal, permission, project_id=project.id, resource_id=project.id)
    return project


async def get_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID
) -> Project:
    return await _project(session, principal, project_id, "project:read")


async def update_project(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID, body: ProjectUpdate
) -> Project:
    project = await _project(session, principal, project_id, "project:update")
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes:
        if changes["name"] is None:
            raise ValidationFailed.field("name", "may not be null")
        project.name = changes["name"]
    if "description" in changes:
        project.description = changes["description"] or ""
    if "team" in changes:
        project.team = changes["team"]
    await session.flush()
    await audit(
        session,
        "project.update",
        principal,
        resource_type="project",
        resource_id=project.id,
        detail={"fields": sorted(changes)},
        project_id=project.id,
    )
    return project


async def set_status(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID, status: str
) -> Project:
    """Disable (its data stays readable, every change is refused) or enable a project: its
    owners', and the instance administrators'."""
    verb = "disable" if status == "disabled" else "enable"
    project = await _project(session, principal, project_id, f"project:{verb}")
    if project.status != status:
        project.status = status
        await session.flush()
        # Principals carry their project's state: every process re-reads it.
        await changed(session)
    await audit(
        session,
        f"project.{verb}",
        principal,
        resource_type="project",
        resource_id=project.id,
        project_id=project.id,
    )
    return project
