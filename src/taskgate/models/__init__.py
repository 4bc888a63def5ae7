"""ORM tables, kept apart from the API schemas. Import every model here for Alembic."""

from taskgate.db.base import Base
from taskgate.models.audit import AuditRecord
from taskgate.models.event import Event
from taskgate.models.idempotency import IdempotencyRecord
from taskgate.models.identity import ApiKey, RefreshToken, User

__all__ = ["ApiKey", "AuditRecord", "Base", "Event", "IdempotencyRecord", "RefreshToken", "User"]
