"""The project a request works in: named by ``X-Tenant-ID`` (id or slug), ``OpenAI-Project``,
or a ``project_id`` query parameter, else the caller's default project.

Which projects exist and who may see them is governance's business: the app hands its
``governance/selection.py:ProjectDirectory`` in as the ``ProjectSelector`` (``app.state.projects``).
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import parse_qsl

from starlette.types import Scope

from taskgate.auth.principal import Principal

_HEADERS = (b"x-tenant-id", b"openai-project")


class ProjectSelector(Protocol):
    async def select(self, principal: Principal, reference: str) -> Principal:
        """``principal`` working in the project ``reference`` names; NotFound when there is
        no such project or ``principal`` may not see it."""
        ...


def requested_project(scope: Scope) -> str | None:
    """The project a request names by header or query parameter, if any."""
    for name, value in scope["headers"]:
        if name in _HEADERS:
            named: str = value.decode("latin-1").strip()
            if named:
                return named
    query: bytes = scope.get("query_string", b"")
    if b"project_id=" in query:
        for key, named in parse_qsl(query.decode("latin-1")):
            if key == "project_id" and named:
                return str(named)
    return None


async def request_principal(
    scope: Scope, principal: Principal, projects: ProjectSelector
) -> Principal:
    """``principal`` in the project its request names (or its default project)."""
    reference = requested_project(scope)
    if reference is None:
        return principal
    return await projects.select(principal, reference)
