"""Per-request context readable from anywhere below the endpoint: trace id and client IP."""

from __future__ import annotations

from contextvars import ContextVar

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)


def current_trace_id() -> str | None:
    return trace_id_var.get()


def current_client_ip() -> str | None:
    return client_ip_var.get()
