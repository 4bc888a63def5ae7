"""ORM tables, kept apart from the API schemas. Import every model here for Alembic."""

from taskgate.db.base import Base
from taskgate.models.audit import AuditRecord
from taskgate.models.destinations import (
    Delivery,
    DeliveryAttempt,
    Destination,
    DispatchCursor,
    Subscription,
)
from taskgate.models.event import Event
from taskgate.models.governance import (
    AccessRule,
    GovernanceState,
    Group,
    GroupMember,
    Project,
    RoleBinding,
)
from taskgate.models.idempotency import IdempotencyRecord
from taskgate.models.identity import ApiKey, RefreshToken, StreamTicket, User
from taskgate.models.queue import Node, QueueJob
from taskgate.models.schedules import Schedule, ScheduleRun
from taskgate.models.tasks import ChatSession, Run, RunLog, Task, TaskJob
from taskgate.models.workflows import (
    Approval,
    ExecutionStep,
    WebhookReceipt,
    WebhookSource,
    Workflow,
    WorkflowExecution,
    WorkflowVersion,
)

__all__ = [
    "AccessRule",
    "ApiKey",
    "Approval",
    "AuditRecord",
    "Base",
    "ChatSession",
    "Delivery",
    "DeliveryAttempt",
    "Destination",
    "DispatchCursor",
    "Event",
    "ExecutionStep",
    "GovernanceState",
    "Group",
    "GroupMember",
    "IdempotencyRecord",
    "Node",
    "Project",
    "QueueJob",
    "RefreshToken",
    "RoleBinding",
    "Run",
    "RunLog",
    "Schedule",
    "ScheduleRun",
    "StreamTicket",
    "Subscription",
    "Task",
    "TaskJob",
    "User",
    "WebhookReceipt",
    "WebhookSource",
    "Workflow",
    "WorkflowExecution",
    "WorkflowVersion",
]
