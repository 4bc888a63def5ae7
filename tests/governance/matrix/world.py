"""The project the matrix runs against: its callers and a resource of every kind, made with
the API (an approval, which only a running agent asks for, straight in the database).

``World.param`` gives an operation's path parameter: the shared resource of that name, or a
fresh one for an operation that consumes what it acts on (deleting, cancelling, deciding).
Everything is created by the project's owner, so that no caller under test owns it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from taskgate.approvals.service import request_task_approval
from taskgate.db.session import Database
from taskgate.models import Approval, Run, Task, TaskJob
from tests.governance.matrix.rules import Who
from tests.governance.support import bind, project
from tests.support.clients import User, create_user, login

TASK = {"commands": ["true"]}
GRAPH = {"nodes": [{"id": "say", "type": "log", "config": {"message": "hi"}}], "edges": []}
WEBHOOK_SECRET = "whsec-matrix-" + "s" * 24
VISITOR_PASSWORD = "pw-visitor-123"
METRICS_TOKEN = "metrics-matrix-token-" + "m" * 20
ROLES = {"viewer": "vic", "member": "mia", "operator": "oli", "project_admin": "ada"}


class Fail(AssertionError):
    pass


def _id(response: httpx.Response, key: str = "id") -> str:
    if response.status_code >= 300:
        raise Fail(f"{response.request.method} {response.request.url.path}: {response.text}")
    value = response.json()[key]
    return str(value)


@dataclass
class World:
    client: httpx.AsyncClient
    db: Database
    admin: User
    owner: User
    project_id: str
    users: dict[str, User] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    shared: dict[str, str] = field(default_factory=dict)
    serial: int = 0

    # Who calls ------------------------------------------------------------------------------

    def credentials(self, who: Who) -> dict[str, str]:
        return dict(self.headers[who.name])

    def user_of(self, who: Who) -> User | None:
        return self.users.get(who.name)

    def as_owner(self) -> dict[str, str]:
        return {**self.owner.headers, "X-Tenant-ID": self.project_id}

    def name(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    # Resources ------------------------------------------------------------------------------

    async def post(self, path: str, body: Any = None, key: str = "id", **kw: Any) -> str:
        headers = kw.pop("headers", None) or self.as_owner()
        return _id(await self.client.post(path, json=body, headers=headers, **kw), key)

    async def task(self) -> str:
        return await self.post("/api/v1/tasks", TASK, key="task_id")

    async def paused_task(self) -> str:
        task_id = await self.task()
        await self.post(f"/api/v1/tasks/{task_id}/pause", key="success")
        return task_id

    async def paused_schedule(self) -> str:
        schedule_id = await self.schedule()
        await self.post(f"/api/v1/schedules/{schedule_id}/pause")
        return schedule_id

    async def enable_project(self) -> None:
        await self.post(f"/api/v1/projects/{self.project_id}/enable", key="status")

    async def make(self, maker: str, who: Who) -> str:
        """A new resource for a call that uses one up: ``maker`` names it (a path parameter
        or another method of this class)."""
        if maker == "own_key":
            return await self.own_key(who)
        if maker in MAKERS:
            return await MAKERS[maker](self)
        made: str = await getattr(self, maker)()
        return made

    async def run(self) -> str:
        return await self.post("/api/v1/runs", {"name": self.name("run")})

    async def job(self) -> str:
        """A job of a task, as a worker records one when it runs the task's commands."""
        task_id = uuid.UUID(await self.task())
        async with self.db.transaction() as session:
            task = await session.get(Task, task_id)
            assert task is not None
            job = TaskJob(
                owner_id=task.owner_id,
                project_id=task.project_id,
                task_id=task.id,
                kind="commands",
                status="QUEUED",
                input=TASK,
            )
            session.add(job)
            await session.flush()
            return str(job.id)

    async def workflow(self) -> str:
        return await self.post("/api/v1/workflows", {"name": self.name("flow"), "graph": GRAPH})

    async def execution(self) -> str:
        workflow = self.shared.get("workflow_id") or await self.workflow()
        return await self.post(
            f"/api/v1/workflows/{workflow}/run", {"input": {}}, key="execution_id"
        )

    async def finished_execution(self) -> str:
        """An execution that ended (cancelled before it started): one that can be replayed."""
        execution_id = await self.execution()
        await self.post(f"/api/v1/executions/{execution_id}/cancel", key="success")
        return execution_id

    async def schedule(self) -> str:
        body = {"name": self.name("nightly"), "cron_expression": "0 3 * * *", "task": TASK}
        return await self.post("/api/v1/schedules", body)

    async def destination(self) -> str:
        body = {
            "name": self.name("hook"),
            "destination_type": "webhook",
            "destination_config": {"url": "http://127.0.0.1:9/hook"},
        }
        return await self.post("/api/v1/destinations", body)

    async def subscription(self) -> str:
        destination = self.shared.get("destination_id") or await self.destination()
        body = {"destination_id": destination, "event_pattern": "task.*"}
        return await self.post("/api/v1/subscriptions", body)

    async def webhook_source(self) -> str:
        body = {"name": self.name("source"), "secret": WEBHOOK_SECRET}
        return await self.post("/api/v1/webhook-sources", body)

    async def approval(self) -> str:
        """A pending approval of a task's tool call, as the task runner asks for one."""
        task_id = uuid.UUID(await self.task())
        async with self.db.transaction() as session:
            task = await session.get(Task, task_id)
            assert task is not None
            task.status = "WAITING_APPROVAL"
            pending = {"call_id": "call_1", "tool": "run_commands", "arguments": TASK}
            session.add(
                Run(
                    owner_id=task.owner_id,
                    project_id=task.project_id,
                    task_id=task.id,
                    name="attempt 1",
                    kind="agent",
                    status="WAITING_APPROVAL",
                    transcript={"pending": pending},
                )
            )
            approval = await request_task_approval(
                session, task, tool="run_commands", arguments=TASK
            )
        return str(approval.id)

    async def approval_task(self) -> tuple[str, str]:
        approval_id = await self.approval()
        async with self.db.transaction(write=False) as session:
            found = await session.get(Approval, uuid.UUID(approval_id))
            assert found is not None
        return approval_id, str(found.task_id)

    async def user(self) -> str:
        """A user to act on (bind, disable, add to a group), who never signs in."""
        body = {"username": self.name("someone"), "password": "pw-someone-123"}
        return await self.post("/api/v1/users", body, headers=self.admin.headers)

    async def visitor_login(self) -> User:
        """A new session of ``visitor``, a user with no role anywhere."""
        return await login(self.client, "visitor", VISITOR_PASSWORD)

    async def group(self) -> str:
        body = {"name": self.name("team")}
        return await self.post("/api/v1/groups", body, headers=self.admin.headers)

    async def member_of_group(self) -> tuple[str, str]:
        group_id, user_id = await self.group(), await self.user()
        await self.post(
            f"/api/v1/groups/{group_id}/members",
            {"user_id": user_id},
            key="user_id",
            headers=self.admin.headers,
        )
        return group_id, user_id

    @staticmethod
    def rule_body(user_id: str) -> dict[str, Any]:
        """An access rule that changes nothing the matrix asks: it names a user nobody calls
        as."""
        return {
            "subject_type": "user",
            "subject_id": user_id,
            "action": "read",
            "resource_type": "task",
            "resource_pattern": "*",
            "effect": "deny",
        }

    async def rule(self) -> str:
        body = self.rule_body(await self.user())
        return await self.post("/api/v1/access-rules", body, headers=self.admin.headers)

    async def binding(self) -> str:
        response = await bind(self.client, self.owner, await self.user(), "viewer", self.project_id)
        return _id(response)

    async def own_key(self, who: Who) -> str:
        """A key of ``who``'s user (made with its token: its own key may lack the scope)."""
        user = self.user_of(who)
        if user is None:
            return str(uuid.uuid4())
        body = {"name": self.name("key")}
        return await self.post("/api/v1/api-keys", body, headers=user.headers)


Maker = Callable[[World], Awaitable[str]]
# Path parameters and the resource each names.
MAKERS: dict[str, Maker] = {
    "task_id": World.task,
    "run_id": World.run,
    "job_id": World.job,
    "workflow_id": World.workflow,
    "execution_id": World.execution,
    "schedule_id": World.schedule,
    "destination_id": World.destination,
    "subscription_id": World.subscription,
    "source_id": World.webhook_source,
    "approval_id": World.approval,
    "user_id": World.user,
    "group_id": World.group,
    "rule_id": World.rule,
    "binding_id": World.binding,
}


async def build(client: httpx.AsyncClient, db: Database, admin: User) -> World:
    """Project ``studio`` owned by olga, a user per role, two keys of its admin, an outsider,
    and one shared resource of every kind."""
    owner = await create_user(client, admin, "olga")
    project_id = await project(client, owner, "Studio")
    world = World(client, db, admin, owner, project_id)
    for who, username in ROLES.items():
        user = await create_user(client, admin, username)
        role = "admin" if who == "project_admin" else who
        _id(await bind(client, owner, user.id, role, project_id))
        world.users[who] = user
        world.headers[who] = user.headers
    outsider = await create_user(client, admin, "otto")
    await create_user(client, admin, "visitor")
    ada = world.users["project_admin"]
    elsewhere = (await client.get("/api/v1/users/me", headers=ada.headers)).json()
    for who, body in (
        ("read_key", {"scopes": ["tasks:read"], "project_id": project_id}),
        ("other_key", {"project_id": elsewhere["default_project_id"]}),
    ):
        body = {"name": who, **body}
        secret = await world.post("/api/v1/api-keys", body, key="key", headers=ada.headers)
        world.users[who] = ada
        world.headers[who] = {"X-API-Key": secret}
    world.users.update(outsider=outsider, instance_admin=admin)
    world.headers.update(anonymous={}, outsider=outsider.headers, instance_admin=admin.headers)
    for param in ("workflow_id", "destination_id"):
        world.shared[param] = await MAKERS[param](world)
    for param, make in MAKERS.items():
        if param not in world.shared:
            world.shared[param] = await make(world)
    world.shared.update(project_id=project_id, version="1")
    return world
