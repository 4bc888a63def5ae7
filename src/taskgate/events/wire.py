"""A committed event as the streams carry it: read once, encoded once, shared by every reader."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from taskgate.clock import isoformat

# The subject columns an event may carry; the API shows all but workflow_id (a filter only).
SUBJECTS = ("task_id", "run_id", "job_id", "execution_id", "workflow_id", "session_id")
_SHOWN = ("task_id", "run_id", "job_id", "execution_id", "session_id")
# Event ids are BIGINTs: a client's "last seen id" past this names no event and would not
# fit in a query parameter.
MAX_EVENT_ID = 2**63 - 1


class EventRecord:
    """Immutable once built. Thousands of subscribers hold the same instance, so its JSON and
    SSE encodings are computed on first use and kept."""

    __slots__ = (
        "_json",
        "_sse",
        "created_at",
        "execution_id",
        "id",
        "job_id",
        "owner_id",
        "payload",
        "project_id",
        "run_id",
        "session_id",
        "task_id",
        "type",
        "workflow_id",
    )

    def __init__(
        self,
        id: int,
        type: str,
        owner_id: uuid.UUID | None,
        created_at: datetime,
        payload: dict[str, Any],
        *,
        task_id: uuid.UUID | None = None,
        run_id: uuid.UUID | None = None,
        job_id: uuid.UUID | None = None,
        execution_id: uuid.UUID | None = None,
        workflow_id: uuid.UUID | None = None,
        session_id: uuid.UUID | None = None,
        project_id: uuid.UUID | None = None,
    ) -> None:
        self.id = id
        self.type = type
        self.owner_id = owner_id
        self.created_at = created_at
        self.payload = payload
        self.task_id = task_id
        self.run_id = run_id
        self.job_id = job_id
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.session_id = session_id
        self.project_id = project_id
        self._json: str | None = None
        self._sse: bytes | None = None

    def out(self) -> dict[str, Any]:
        """The EventOut shape (``events/schemas.py``) as plain JSON values."""
        body: dict[str, Any] = {"id": self.id, "type": self.type}
        body["created_at"] = isoformat(self.created_at)
        for name in _SHOWN:
            value = getattr(self, name)
            body[name] = str(value) if value is not None else None
        body["payload"] = self.payload
        return body

    @property
    def json(self) -> str:
        if self._json is None:
            self._json = json.dumps(self.out(), separators=(",", ":"), ensure_ascii=False)
        return self._json

    @property
    def sse(self) -> bytes:
        """One Server-Sent Events frame; JSON never contains a raw newline, so one data line."""
        if self._sse is None:
            # A line break in a (user-posted) type would end the field early and forge another.
            name = self.type.replace("\r", " ").replace("\n", " ")
            self._sse = f"id: {self.id}\nevent: {name}\ndata: {self.json}\n\n".encode()
        return self._sse

    def __repr__(self) -> str:
        return f"EventRecord({self.id}, {self.type!r})"


SSE_PING = b": ping\n\n"


def sse_done(reason: str) -> bytes:
    """The last frame of a stream whose subject ended."""
    return f"event: done\ndata: {json.dumps({'reason': reason})}\n\n".encode()
