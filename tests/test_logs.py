"""Log lines carry the trace id of the request they were written in."""

from __future__ import annotations

import logging

from taskgate.http.context import trace_id_var
from taskgate.logs import add_trace_id, configure_logging
from taskgate.settings import Settings


def test_a_line_written_in_a_request_carries_its_trace_id() -> None:
    token = trace_id_var.set("abc-123")
    try:
        assert add_trace_id(None, "info", {"event": "x"})["trace_id"] == "abc-123"
        # An id given with the line itself is kept.
        assert add_trace_id(None, "info", {"trace_id": "mine"})["trace_id"] == "mine"
    finally:
        trace_id_var.reset(token)
    assert "trace_id" not in add_trace_id(None, "info", {"event": "x"})


def test_credentials_in_logged_urls_are_masked(settings: Settings) -> None:
    configure_logging(settings)
    access = logging.getLogger("uvicorn.access")
    # uvicorn's access line and its WebSocket line carry the path with its query string.
    record = access.makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/api/v1/stream/sse?ticket=tgst_abc&task_id=1", "1.1", 200),
        None,
    )
    socket = logging.getLogger("uvicorn.error").makeRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/api/v1/stream/ws?x=1&token=tg_abc_secret&API_KEY=k"),
        None,
    )
    for logger, line in ((access, record), (logging.getLogger("uvicorn.error"), socket)):
        assert logger.filter(line)
    assert record.getMessage() == (
        '127.0.0.1:5000 - "GET /api/v1/stream/sse?ticket=REDACTED&task_id=1 HTTP/1.1" 200'
    )
    assert socket.getMessage() == (
        '127.0.0.1:5000 - "WebSocket /api/v1/stream/ws?x=1&token=REDACTED&API_KEY=REDACTED" '
        "[accepted]"
    )
