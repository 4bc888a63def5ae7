"""Log lines carry the trace id of the request they were written in."""

from __future__ import annotations

from taskgate.http.context import trace_id_var
from taskgate.logs import add_trace_id


def test_a_line_written_in_a_request_carries_its_trace_id() -> None:
    token = trace_id_var.set("abc-123")
    try:
        assert add_trace_id(None, "info", {"event": "x"})["trace_id"] == "abc-123"
        # An id given with the line itself is kept.
        assert add_trace_id(None, "info", {"trace_id": "mine"})["trace_id"] == "mine"
    finally:
        trace_id_var.reset(token)
    assert "trace_id" not in add_trace_id(None, "info", {"event": "x"})
