"""Workflow use cases: create, list, read, change (each change a new immutable version),
delete."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from taskgate.audit.service import audit
from taskgate.auth.principal import Principal
from taskgate.clock import utcnow
from taskgate.errors import Conflict, NotFound
from taskgate.governance.access import authorize, may
from taskgate.http.pagination import Page, PageParams, page_of
from taskgate.ids import new_id
from taskgate.models import Workflow, WorkflowVersion
from taskgate.outbound.secretbox import SecretBox
from taskgate.versioning import ExpectedVersion, check_version
from taskgate.workflows import repository as repo
from taskgate.workflows.definitions.checks import check_graph, check_trigger
from taskgate.workflows.schemas import (
    DuplicateRequest,
    WorkflowCreate,
    WorkflowFilters,
    WorkflowOut,
    WorkflowSummary,
    WorkflowUpdate,
    WorkflowVersionOut,
)

_DEFINITION = ("name", "slug", "description", "enabled", "trigger_type", "trigger_config", "graph")


def _aad(workflow_id: uuid.UUID) -> bytes:
    return f"workflow:{workflow_id}".encode()


def open_secrets(box: SecretBox, workflow: Workflow) -> dict[str, str]:
    """The workflow's secret values (for the executor only; never returned by the API)."""
    if workflow.secrets_ciphertext is None or workflow.secrets_kid is None:
        return {}
    raw = box.decrypt(workflow.secrets_ciphertext, workflow.secrets_kid, aad=_aad(workflow.id))
    values: dict[str, str] = json.loads(raw)
    return values


def _seal_secrets(box: SecretBox, workflow: Workflow, values: dict[str, str]) -> None:
    workflow.secret_names = sorted(values)
    if not values:
        workflow.secrets_ciphertext, workflow.secrets_kid = None, None
        return
    workflow.secrets_ciphertext, workflow.secrets_kid = box.encrypt(
        json.dumps(values), aad=_aad(workflow.id)
    )


def _slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:180]
    return slug or "workflow"


async def _free_slug(session: AsyncSession, project_id: uuid.UUID, base: str) -> str:
    taken = await repo.live_slugs_like(session, project_id, base)
    if base not in taken:
        return base
    number = 2
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _snapshot(workflow: Workflow, change: str, principal: Principal) -> WorkflowVersion:
    return WorkflowVersion(
        workflow_id=workflow.id,
        version=workflow.version,
        name=workflow.name,
        slug=workflow.slug,
        description=workflow.description,
        enabled=workflow.enabled,
        trigger_type=workflow.trigger_type,
        trigger_config=workflow.trigger_config,
        graph=workflow.graph,
        change=change,
        created_by=principal.username,
    )


async def create_workflow(
    session: AsyncSession,
    principal: Principal,
    body: WorkflowCreate,
    box: SecretBox,
    *,
    project_id: uuid.UUID | None = None,
) -> Workflow:
    """A new workflow in ``project_id`` (None: the request's project)."""
    project_id = authorize(principal, "workflow:create", project_id=project_id)
    check_graph(body.graph)
    check_trigger(body.trigger_type, body.trigger_config)
    if body.slug is not None:
        if await repo.slug_taken(session, project_id, body.slug):
            raise _slug_in_use(body.slug)
        slug = body.slug
    else:
        slug = await _free_slug(session, project_id, _slugify(body.name))
    workflow = Workflow(
        id=new_id(),
        owner_id=principal.user_id,
        project_id=project_id,
        name=body.name,
        slug=slug,
        description=body.description,
        enabled=body.enabled,
        trigger_type=body.trigger_type,
        trigger_config=body.trigger_config,
        graph=body.graph,
        version=1,
        secret_names=[],
    )
    _seal_secrets(box, workflow, dict(body.secrets or {}))
    session.add(workflow)
    session.add(_snapshot(workflow, "created", principal))
    await audit(
        session,
        "workflow.create",
        principal,
        resource_type="workflow",
        resource_id=workflow.id,
        detail={"name": workflow.name, "trigger_type": workflow.trigger_type},
    )
    return workflow


def _slug_in_use(slug: str) -> Conflict:
    return Conflict(f"This project already has a workflow with the slug {slug!r}.")


async def authorized_workflow(
    session: AsyncSession,
    principal: Principal,
    workflow_id: uuid.UUID,
    permission: str,
    *,
    lock: bool = False,
) -> Workflow:
    """The live workflow, if ``principal`` holds ``permission`` on it in its project (a
    member changes what it created; an admin anyone's); 404 when missing or invisible."""
    workflow = await repo.live_workflow(session, workflow_id, lock=lock)
    if workflow is None:
        raise NotFound("Workflow not found.")
    authorize(
        principal,
        permission,
        project_id=workflow.project_id,
        owner_id=workflow.owner_id,
        resource_id=workflow.id,
    )
    return workflow


async def get_workflow(
    session: AsyncSession, principal: Principal, workflow_id: uuid.UUID
) -> Workflow:
    """A workflow of a project ``principal`` reads workflows in, whoever made it."""
    return await authorized_workflow(session, principal, workflow_id, "workflow:read")


async def list_workflows(
    session: AsyncSession, principal: Principal, filters: WorkflowFilters, page: PageParams
) -> Page[WorkflowSummary]:
    """The workflows of the request's project, everyone's."""
    project_id = authorize(principal, "workflow:read")
    return await page_of(
        session, repo.workflows_listing(project_id, filters), page, workflow_summary
    )


async def update_workflow(
    session: AsyncSession,
    principal: Principal,
    workflow_id: uuid.UUID,
    body: WorkflowUpdate,
    box: SecretBox,
    *,
    if_match: ExpectedVersion | None,
) -> Workflow:
    workflow = await authorized_workflow(
        session, principal, workflow_id, "workflow:update", lock=True
    )
    check_version(if_match, workflow.version, "workflow")
    sent = body.model_dump(exclude_unset=True)
    changes = {k: v for k, v in sent.items() if k in _DEFINITION and v is not None}
    if "graph" in changes:
        check_graph(changes["graph"])
    trigger_type = changes.get("trigger_type", workflow.trigger_type)
    if "trigger_type" in changes or "trigger_config" in changes:
        check_trigger(trigger_type, changes.get("trigger_config", workflow.trigger_config))
    slug = changes.get("slug")
    if (
        slug is not None
        and slug != workflow.slug
        and await repo.slug_taken(session, workflow.project_id, slug, exclude=workflow.id)
    ):
        raise _slug_in_use(slug)
    changed = [k for k, v in changes.items() if getattr(workflow, k) != v]
    for key in changed:
        setattr(workflow, key, changes[key])
    if body.secrets:
        values = open_secrets(box, workflow)
        for name, value in body.secrets.items():
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        _seal_secrets(box, workflow, values)
        changed.append("secrets")
    if not changed:
        return workflow
    workflow.version += 1
    workflow.updated_at = utcnow()
    session.add(_snapshot(workflow, "updated", principal))
    await audit(
        session,
        "workflow.update",
        principal,
        resource_type="workflow",
        resource_id=workflow.id,
        detail={"fields": changed, "workflow_version": workflow.version},
    )
    return workflow


async def delete_workflow(
    session: AsyncSession,
    principal: Principal,
    workflow_id: uuid.UUID,
    *,
    if_match: ExpectedVersion | None,
) -> None:
    """Soft delete: the workflow stops triggering; its executions and versions stay readable."""
    workflow = await authorized_workflow(
        session, principal, workflow_id, "workflow:delete", lock=True
    )
    check_version(if_match, workflow.version, "workflow")
    workflow.deleted_at = utcnow()
    workflow.enabled = False
    await audit(
        session, "workflow.delete", principal, resource_type="workflow", resource_id=workflow.id
    )


async def duplicate_workflow(
    session: AsyncSession,
    principal: Principal,
    workflow_id: uuid.UUID,
    body: DuplicateRequest,
    box: SecretBox,
) -> Workflow:
    source = await get_workflow(session, principal, workflow_id)
    # Secret values go with the copy only for whoever may change the source: a copy is the
    # caller's to edit, so its templates could otherwise reveal someone else's secrets.
    keeps_secrets = may(principal, "workflow:update", source.project_id, owner_id=source.owner_id)
    copy = WorkflowCreate(
        name=body.name or f"{source.name} (copy)"[:200],
        slug=body.slug,
        description=source.description,
        enabled=source.enabled,
        trigger_type=source.trigger_type,
        trigger_config=source.trigger_config,
        graph=source.graph,
        secrets=(open_secrets(box, source) or None) if keeps_secrets else None,
    )
    # The copy goes in the source's project, and is the caller's.
    return await create_workflow(session, principal, copy, box, project_id=source.project_id)


async def list_versions(
    session: AsyncSession, principal: Principal, workflow_id: uuid.UUID, page: PageParams
) -> Page[WorkflowVersionOut]:
    """The versions of a workflow of the project (not of a deleted one)."""
    workflow = await get_workflow(session, principal, workflow_id)
    return await page_of(session, repo.versions_listing(workflow.id), page, version_out)


async def get_version(
    session: AsyncSession, principal: Principal, workflow_id: uuid.UUID, version: int
) -> WorkflowVersion:
    workflow = await get_workflow(session, principal, workflow_id)
    row = await repo.version_of(session, workflow.id, version)
    if row is None:
        raise NotFound("Workflow version not found.")
    return row


def workflow_summary(workflow: Workflow) -> WorkflowSummary:
    return WorkflowSummary(**_common(workflow))


def workflow_out(workflow: Workflow) -> WorkflowOut:
    return WorkflowOut(
        **_common(workflow),
        trigger_config=workflow.trigger_config,
        graph=workflow.graph,
        secret_names=list(workflow.secret_names or []),
    )


def _common(workflow: Workflow) -> dict[str, Any]:
    return {
        "id": workflow.id,
        "name": workflow.name,
        "slug": workflow.slug,
        "description": workflow.description,
        "enabled": workflow.enabled,
        "trigger_type": workflow.trigger_type,
        "workflow_version": workflow.version,
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
    }


def version_out(version: WorkflowVersion) -> WorkflowVersionOut:
    return WorkflowVersionOut(
        id=version.id,
        workflow_id=version.workflow_id,
        workflow_version=version.version,
        change=version.change,
        name=version.name,
        slug=version.slug,
        description=version.description,
        enabled=version.enabled,
        trigger_type=version.trigger_type,
        trigger_config=version.trigger_config,
        graph=version.graph,
        created_by=version.created_by,
        created_at=version.created_at,
    )
