"""Structured logs (JSON by default) carrying the request's trace id."""

from __future__ import annotations

import logging
import re
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger

from taskgate.http.context import trace_id_var
from taskgate.settings import Settings


def add_trace_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """The request's trace id, read only when a line is written: binding it into structlog's
    context on every request would cost each request about a microsecond for lines that are
    rarely written."""
    trace_id = trace_id_var.get()
    if trace_id is not None:
        event_dict.setdefault("trace_id", trace_id)
    return event_dict


# Credentials a client may put in a URL (the WebSocket's ?token=, a stream ?ticket=): servers
# log request lines with their query string, so their values are masked in every log line.
_SECRET_QUERY = re.compile(r"([?&](?:token|ticket|api_key|access_token)=)[^&\s\"']*", re.I)
REDACTED = "REDACTED"


def redact_url(text: str) -> str:
    return _SECRET_QUERY.sub(rf"\g<1>{REDACTED}", text)


class RedactQuerySecrets(logging.Filter):
    """Masks credential query values in stdlib log records (uvicorn's access and WebSocket
    lines put the full path with its query string into ``args``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


_REDACTOR = RedactQuerySecrets()


def configure_logging(settings: Settings) -> None:
    for name in ("uvicorn.access", "uvicorn.error", "gunicorn.access"):
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)
    level = logging.getLevelName(settings.log_level.upper())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.log_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            level if isinstance(level, int) else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
