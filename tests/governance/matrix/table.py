"""One row per operation: what it needs (``rules``) and how to call it for real.

Every operation the app serves (documented or not, HTTP, SSE or WebSocket) has a row keyed by
(method, path template); ``test_authorization_matrix`` fails for one without. A row says:

- ``need``: the permission (or ``Public``, ``Authenticated``, ``System`` …) it requires;
- ``in_project``: it acts in the request's project (lists, creations), so the call names the
  project under test with ``X-Tenant-ID``; otherwise the path's resource says which project;
- ``body`` (a dict, or made per call), ``query``;
- ``fresh``: path parameters made anew for each call, for operations that use up what they act
  on (a deleted destination cannot be deleted twice), optionally with the maker to use;
- ``call``: a function building the whole request, where parameters depend on each other;
- ``undo``: what puts the project back after a permitted call (re-enabling it);
- ``ok``: the outcome of a permitted call where that is not 2xx (a 409, by the rule).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.governance.matrix.calls import (
    Call,
    approval_in_body,
    logout,
    member_removal,
    new_binding,
    new_member,
    new_rule,
    new_user,
    refresh,
    signed_webhook,
    subscription_body,
    visitor_credentials,
)
from tests.governance.matrix.rules import (
    OK,
    Authenticated,
    InProject,
    Need,
    Project,
    Public,
    System,
    Token,
    Who,
)
from tests.governance.matrix.world import GRAPH, TASK, World

Body = Mapping[str, Any] | Callable[[World, Who], Awaitable[Mapping[str, Any]]] | None


@dataclass(frozen=True)
class Op:
    need: Need
    in_project: bool = False
    body: Body = None
    query: Mapping[str, str] | None = None
    fresh: Mapping[str, str] = field(default_factory=dict)
    call: Callable[[World, Who, str, str], Awaitable[Call]] | None = None
    ok: str = OK
    shows: str | None = None  # a list: a permitted caller's page names this shared resource
    kind: str = "http"  # "sse": a stream read to its headers; "ws": a WebSocket channel
    undo: Callable[[World], Awaitable[None]] | None = None  # after a permitted call


def fresh(*params: str, **makers: str) -> dict[str, str]:
    """Path parameters made anew per call: ``fresh("task_id")``, or with another maker:
    ``fresh(task_id="paused_task")``."""
    return {**dict.fromkeys(params, ""), **makers}


def P(permission: str, **kw: Any) -> Op:
    return Op(Project(permission), **kw)


def S(permission: str, **kw: Any) -> Op:
    return Op(System(permission), **kw)


def HERE(permission: str, **kw: Any) -> Op:
    return Op(Project(permission), in_project=True, **kw)


ANYONE = Op(Public())
SIGNED_IN = Op(Authenticated())
V1 = "/api/v1"
T, R = f"{V1}/tasks/{{task_id}}", f"{V1}/runs/{{run_id}}"
W, X = f"{V1}/workflows", f"{V1}/executions"
SCH, DST, SUB = f"{V1}/schedules", f"{V1}/destinations", f"{V1}/subscriptions"
SRC, APR, PRJ, GRP = f"{V1}/webhook-sources", f"{V1}/approvals", f"{V1}/projects", f"{V1}/groups"
RUL, USR, KEY = f"{V1}/access-rules", f"{V1}/users", f"{V1}/api-keys"
RENAME = {"description": "renamed by the matrix"}
KEY_BODY = {"name": "matrix key"}
OWN_KEY = Authenticated("api-keys:read")
KEY_WRITE = Authenticated("api-keys:write")

OPERATIONS: dict[tuple[str, str], Op] = {
    # operations, documents
    ("GET", "/health"): ANYONE,
    ("GET", "/readiness"): ANYONE,
    ("GET", "/metrics"): Op(Token()),
    ("GET", "/openapi.json"): ANYONE,
    ("GET", "/docs"): ANYONE,
    ("GET", "/docs/oauth2-redirect"): ANYONE,
    ("GET", "/redoc"): ANYONE,
    ("GET", f"{V1}/capabilities"): SIGNED_IN,
    # signing in, oneself, one's keys
    ("POST", f"{V1}/auth/login"): Op(Public(), body=visitor_credentials),
    ("POST", f"{V1}/auth/token"): Op(Public(), body=visitor_credentials),
    ("POST", f"{V1}/auth/refresh"): Op(Public(), body=refresh),
    ("POST", f"{V1}/auth/logout"): Op(Authenticated(), body=logout),
    ("GET", f"{V1}/users/me"): SIGNED_IN,
    ("GET", KEY): Op(OWN_KEY),
    ("POST", KEY): Op(KEY_WRITE, body=KEY_BODY),
    ("GET", f"{KEY}/{{key_id}}"): Op(OWN_KEY, fresh=fresh(key_id="own_key")),
    ("DELETE", f"{KEY}/{{key_id}}"): Op(KEY_WRITE, fresh=fresh(key_id="own_key")),
    # The key rotated is unrestricted: a key restricted to a project may not reach it.
    ("POST", f"{KEY}/{{key_id}}/rotate"): Op(
        Authenticated("api-keys:write", unrestricted=True), fresh=fresh(key_id="own_key")
    ),
    ("POST", f"{V1}/stream/tickets"): SIGNED_IN,
    # instance level: users, groups, access rules
    ("GET", USR): S("user:read", shows="user_id"),
    ("POST", USR): S("user:create", body=new_user),
    ("GET", f"{USR}/{{user_id}}"): S("user:read"),
    ("PATCH", f"{USR}/{{user_id}}"): S("user:update", body={"timezone": "UTC"}),
    ("POST", f"{USR}/{{user_id}}/disable"): S("user:disable", fresh=fresh("user_id")),
    ("POST", f"{USR}/{{user_id}}/enable"): S("user:disable"),
    ("POST", f"{USR}/{{user_id}}/revoke-sessions"): S("user:update"),
    ("POST", f"{USR}/{{user_id}}/reset-password"): S(
        "user:update", body={"password": "pw-reset-by-matrix-1"}
    ),
    ("GET", GRP): Op(Authenticated("groups:read")),  # one's own groups; all with group:read
    ("POST", GRP): S("group:create", body={"name": "matrix team"}),
    ("GET", f"{GRP}/{{group_id}}"): Op(System("group:read", hidden=True)),
    ("PATCH", f"{GRP}/{{group_id}}"): S("group:update", body=RENAME),
    ("POST", f"{GRP}/{{group_id}}/disable"): S("group:disable", fresh=fresh("group_id")),
    ("POST", f"{GRP}/{{group_id}}/enable"): S("group:disable"),
    ("GET", f"{GRP}/{{group_id}}/members"): Op(System("group:read", hidden=True)),
    ("POST", f"{GRP}/{{group_id}}/members"): S("group:update", call=new_member),
    ("DELETE", f"{GRP}/{{group_id}}/members/{{user_id}}"): S("group:update", call=member_removal),
    ("GET", RUL): S("access_rule:read", shows="rule_id"),
    ("POST", RUL): S("access_rule:create", body=new_rule),
    ("GET", f"{RUL}/{{rule_id}}"): S("access_rule:read"),
    ("PATCH", f"{RUL}/{{rule_id}}"): S("access_rule:update", body={"priority": 1}),
    ("DELETE", f"{RUL}/{{rule_id}}"): S("access_rule:delete", fresh=fresh("rule_id")),
    ("GET", f"{V1}/roles"): SIGNED_IN,
    # projects and who holds a role in them
    ("GET", PRJ): Op(Authenticated("projects:read")),
    ("POST", PRJ): Op(Authenticated("projects:write", unrestricted=True), body={"name": "Side"}),
    ("GET", f"{PRJ}/{{project_id}}"): P("project:read"),
    ("PATCH", f"{PRJ}/{{project_id}}"): P("project:update", body=RENAME),
    ("POST", f"{PRJ}/{{project_id}}/disable"): P("project:disable", undo=World.enable_project),
    ("POST", f"{PRJ}/{{project_id}}/enable"): P("project:enable"),
    ("GET", f"{V1}/role-bindings"): HERE("role_binding:read", shows="binding_id"),
    ("POST", f"{V1}/role-bindings"): HERE("role_binding:create", body=new_binding),
    ("DELETE", f"{V1}/role-bindings/{{binding_id}}"): P(
        "role_binding:delete", fresh=fresh("binding_id")
    ),
    ("GET", f"{V1}/audit"): HERE("audit:read"),
    # tasks, runs, jobs, the queue
    ("GET", f"{V1}/tasks"): HERE("task:read", shows="task_id"),
    ("POST", f"{V1}/tasks"): HERE("task:create", body=TASK),
    ("GET", T): P("task:read"),
    ("GET", f"{T}/events"): P("task:read"),
    ("GET", f"{T}/control-state"): P("task:read"),
    ("POST", f"{T}/cancel"): P("task:cancel", fresh=fresh("task_id")),
    ("POST", f"{T}/pause"): P("task:pause", fresh=fresh("task_id")),
    ("POST", f"{T}/resume"): P("task:resume", fresh=fresh(task_id="paused_task")),
    ("GET", f"{V1}/runs"): HERE("run:read", shows="run_id"),
    ("POST", f"{V1}/runs"): HERE("run:create", body={"name": "reported by the matrix"}),
    ("GET", R): P("run:read"),
    ("GET", f"{R}/logs"): P("run:read"),
    ("POST", f"{R}/logs"): P("run:update", body={"entries": [{"message": "hello"}]}),
    ("GET", f"{V1}/jobs"): HERE("job:read", shows="job_id"),
    ("GET", f"{V1}/jobs/{{job_id}}"): P("job:read"),
    # Instance-wide depth for anyone in the project; its tasks by status with task:read.
    ("GET", f"{V1}/queue"): Op(InProject(), in_project=True),
    # streams
    ("GET", f"{V1}/stream/sse"): Op(InProject(), in_project=True, kind="sse"),
    ("GET", f"{T}/stream"): P("task:read", kind="sse"),
    ("GET", f"{R}/events"): P("run:read", kind="sse"),
    ("GET", f"{X}/{{execution_id}}/stream"): P("execution:read", kind="sse"),
    ("WS", f"{V1}/stream/ws"): P("task:read", kind="ws"),
    ("WS", f"{V1}/streams"): P("task:read", kind="ws"),
    # workflows and their executions
    ("GET", W): HERE("workflow:read", shows="workflow_id"),
    ("POST", W): HERE("workflow:create", body={"name": "matrix flow", "graph": GRAPH}),
    ("GET", f"{W}/{{workflow_id}}"): P("workflow:read"),
    ("PATCH", f"{W}/{{workflow_id}}"): P("workflow:update", body=RENAME),
    ("PUT", f"{W}/{{workflow_id}}"): P("workflow:update", body={"name": "flow", "graph": GRAPH}),
    ("DELETE", f"{W}/{{workflow_id}}"): P("workflow:delete", fresh=fresh("workflow_id")),
    ("GET", f"{W}/{{workflow_id}}/versions"): P("workflow:read"),
    ("GET", f"{W}/{{workflow_id}}/versions/{{version}}"): P("workflow:read"),
    ("POST", f"{W}/{{workflow_id}}/duplicate"): P("workflow:create"),
    ("POST", f"{W}/{{workflow_id}}/run"): P("workflow:run", body={"input": {}}),
    ("GET", X): HERE("execution:read", shows="execution_id"),
    ("GET", f"{X}/{{execution_id}}"): P("execution:read"),
    ("POST", f"{X}/{{execution_id}}/replay"): P(
        "execution:replay", fresh=fresh(execution_id="finished_execution")
    ),
    ("POST", f"{X}/{{execution_id}}/cancel"): P("execution:cancel", fresh=fresh("execution_id")),
    # schedules
    ("GET", SCH): HERE("schedule:read", shows="schedule_id"),
    ("POST", SCH): HERE(
        "schedule:create", body={"name": "matrix", "cron_expression": "0 4 * * *", "task": TASK}
    ),
    ("GET", f"{SCH}/{{schedule_id}}"): P("schedule:read"),
    ("PATCH", f"{SCH}/{{schedule_id}}"): P("schedule:update", body=RENAME),
    ("PUT", f"{SCH}/{{schedule_id}}"): P("schedule:update", body=RENAME),
    ("DELETE", f"{SCH}/{{schedule_id}}"): P("schedule:delete", fresh=fresh("schedule_id")),
    ("POST", f"{SCH}/{{schedule_id}}/pause"): P("schedule:pause", fresh=fresh("schedule_id")),
    ("POST", f"{SCH}/{{schedule_id}}/resume"): P(
        "schedule:resume", fresh=fresh(schedule_id="paused_schedule")
    ),
    ("POST", f"{SCH}/{{schedule_id}}/trigger"): P("schedule:trigger"),
    # Skipping one occurrence is a control of the schedule, as pausing is.
    ("POST", f"{SCH}/{{schedule_id}}/skip-next"): P("schedule:pause"),
    ("GET", f"{SCH}/{{schedule_id}}/runs"): P("schedule:read"),
    # events, webhooks
    ("GET", f"{V1}/events"): HERE("event:read"),
    ("POST", f"{V1}/events"): HERE("event:create", body={"type": "matrix.ping"}),
    ("POST", f"{V1}/webhooks/{{source}}"): Op(Public(), call=signed_webhook),
    ("GET", SRC): HERE("webhook_source:read", shows="source_id"),
    ("POST", SRC): HERE("webhook_source:create", body={"name": "matrix source"}),
    ("GET", f"{SRC}/{{source_id}}"): P("webhook_source:read"),
    ("PATCH", f"{SRC}/{{source_id}}"): P("webhook_source:update", body=RENAME),
    ("DELETE", f"{SRC}/{{source_id}}"): P("webhook_source:delete", fresh=fresh("source_id")),
    # destinations and subscriptions
    ("GET", DST): HERE("destination:read", shows="destination_id"),
    (
        "POST",
        DST,
    ): HERE(
        "destination:create",
        body={
            "name": "matrix hook",
            "destination_type": "webhook",
            "destination_config": {"url": "http://127.0.0.1:9/hook"},
        },
    ),
    ("GET", f"{DST}/{{destination_id}}"): P("destination:read"),
    ("PATCH", f"{DST}/{{destination_id}}"): P("destination:update", body={"name": "renamed"}),
    ("DELETE", f"{DST}/{{destination_id}}"): P("destination:delete", fresh=fresh("destination_id")),
    ("POST", f"{DST}/{{destination_id}}/test"): P("destination:test"),
    ("GET", f"{DST}/{{destination_id}}/deliveries"): P("destination:read"),
    ("GET", SUB): HERE("subscription:read", shows="subscription_id"),
    ("POST", SUB): HERE("subscription:create", body=subscription_body),
    ("GET", f"{SUB}/{{subscription_id}}"): P("subscription:read"),
    # The role table has no subscription:update: changing one is (re)creating it.
    ("PATCH", f"{SUB}/{{subscription_id}}"): P("subscription:create", body={"is_active": True}),
    ("DELETE", f"{SUB}/{{subscription_id}}"): P(
        "subscription:delete", fresh=fresh("subscription_id")
    ),
    # approvals
    ("GET", APR): HERE("approval:read", shows="approval_id"),
    ("GET", f"{APR}/{{approval_id}}"): P("approval:read"),
    ("POST", f"{APR}/{{approval_id}}/decision"): P(
        "approval:decide", body={"approved": True}, fresh=fresh("approval_id")
    ),
    ("POST", f"{APR}/decision"): P("approval:decide", call=approval_in_body),
}
