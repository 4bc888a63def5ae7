"""The project of a request: named by ``X-Tenant-ID`` (id or slug), ``OpenAI-Project``, or a
``project_id`` query parameter (``http/projects.py``) or body field, else the caller's default
project.

It is resolved once per request, into the principal the endpoints and services receive. The
default project comes with the cached user profile (no query); a named one is looked up once
and cached for the principal cache's lifetime, dropped in every process when a project or
who may see it changes (taskgate.governance.changes). Whether the caller sees it is asked of
its grants (taskgate.governance.access.sees), in memory: an unknown project and one the
caller may not see are the same 404, and an API key restricted to one project sees no other.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass

from starlette.types import Scope

from taskgate.audit.service import audit_values
from taskgate.auth.principal import Principal, TTLCache
from taskgate.db.session import Database
from taskgate.errors import NotFound
from taskgate.governance import repository as repo
from taskgate.governance.access import sees
from taskgate.http.projects import requested_project


@dataclass(frozen=True)
class _Selected:
    id: uuid.UUID
    active: bool


class ProjectDirectory:
    """Resolves project references (id or slug) to projects, and asks whether the caller
    sees them; one per process (the app's ``ProjectSelector``, ``http/projects.py``)."""

    def __init__(self, db: Database, ttl: float) -> None:
        self.db = db
        self._found: TTLCache[str, _Selected | None] = TTLCache(ttl)

    def invalidate(self) -> None:
        self._found.invalidate()

    async def select(self, principal: Principal, reference: str) -> Principal:
        """``principal`` working in the project ``reference`` names; 404 when there is no
        such project or ``principal`` may not see it."""
        if principal.project_id is not None and reference == str(principal.project_id):
            return principal
        found = await self._found.get(reference, lambda: self._load(reference))
        if found is None:
            raise NotFound("No such project.")
        if not sees(principal, found.id):
            error = NotFound("No such project.")
            error.denial = audit_values(
                "access.denied",
                principal,
                resource_type="project",
                resource_id=found.id,
                outcome="failure",
                detail={"permission": "project:read", "status": 404, "reason": "not visible"},
                actor_name=None,
                project_id=found.id,
            )
            raise error
        if found.id == principal.project_id and found.active == principal.project_active:
            return principal
        return dataclasses.replace(principal, project_id=found.id, project_active=found.active)

    async def _load(self, reference: str) -> _Selected | None:
        async with self.db.transaction(write=False) as session:
            project = await session.scalar(repo.by_reference(reference))
        if project is None:
            return None
        return _Selected(project.id, project.status != "disabled")


async def with_body_project(
    scope: Scope, principal: Principal, project_id: uuid.UUID | None, directory: ProjectDirectory
) -> Principal:
    """``principal`` in the project a body's ``project_id`` names, when the request named
    none by header or query (those come first)."""
    if project_id is None or requested_project(scope) is not None:
        return principal
    return await directory.select(principal, str(project_id))
