"""How an event reads to people in a chat room: a title and a few detail lines.

Each chat format decorates `describe_event`'s title and lines its own way; `render_text` is
the plain form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from taskgate.outbound.secretbox import redact

EXCERPT_LIMIT = 300
_SUBJECT_KEYS = ("task_id", "execution_id", "run_id", "job_id", "session_id")


def render_text(event: Mapping[str, Any]) -> str:
    """A short, readable plain-text account of an event, for people in a chat room."""
    title, lines = describe_event(event)
    return "\n".join([title, *lines])


_VERBS = {
    "created": "created",
    "queued": "queued",
    "started": "started",
    "running": "started",
    "completed": "completed",
    "succeeded": "succeeded",
    "success": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "timeout": "timed out",
    "timed_out": "timed out",
    "paused": "paused",
    "resumed": "resumed",
    "waiting": "is waiting",
    "waiting_approval": "is waiting for approval",
    "retrying": "is being retried",
    "skipped": "skipped",
}
_TASK_STATUS = {
    "created": "QUEUED",
    "started": "RUNNING",
    "completed": "COMPLETED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
    "timeout": "TIMEOUT",
}


def describe_event(event: Mapping[str, Any]) -> tuple[str, list[str]]:
    """(title, detail lines) for an event; each format decorates them its own way."""
    event_type = str(event.get("type") or "event")
    payload = event.get("payload")
    data: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    family, _, action = event_type.partition(".")
    verb = _VERBS.get(action, action.replace("_", " "))

    if family == "task" and action in _TASK_STATUS:
        task = _subject(event, data, "task_id")
        lines = [f"Status: {data.get('status') or _TASK_STATUS[action]}"]
        if action == "created" and (query := _first(data, "query", "title", "name")):
            lines.append(f"Request: {_excerpt(query)}")
        if action == "completed" and (result := _first(data, "result", "output", "final_output")):
            lines.append(f"Result: {_excerpt(result)}")
        if action in ("failed", "timeout") and (error := _first(data, "error", "error_message")):
            lines.append(f"Error: {_excerpt(error)}")
        if action == "cancelled" and (reason := _first(data, "reason", "cancel_reason")):
            lines.append(f"Reason: {_excerpt(reason)}")
        return f"Task {task} {verb}", lines

    if event_type == "job.completed":
        job = _subject(event, data, "job_id")
        exit_code = data.get("exit_code")
        lines = [f"Exit code: {exit_code}"] if exit_code is not None else []
        lines += _context_lines(event, skip="job_id")
        return f"Job {job} completed", lines

    if family == "execution":
        execution = _subject(event, data, "execution_id")
        workflow = _first(data, "workflow_name", "workflow", "workflow_id")
        title = f"Workflow execution {execution} {verb}"
        lines = [f"Workflow: {workflow}"] if workflow else []
        if status := data.get("status"):
            lines.append(f"Status: {status}")
        if error := _first(data, "error", "error_message"):
            lines.append(f"Error: {_excerpt(error)}")
        return title, lines

    if family == "step":
        step = _first(data, "node_key", "step_key", "step_id", "name") or "?"
        lines = _context_lines(event, skip="")
        if status := data.get("status"):
            lines.append(f"Status: {status}")
        if error := _first(data, "error", "error_message"):
            lines.append(f"Error: {_excerpt(error)}")
        return f"Step {step} {verb}", lines

    if event_type == "approval.requested":
        what = _first(data, "summary", "description", "action", "message", "tool", "tool_name")
        lines = _context_lines(event, skip="")
        if approval := _first(data, "approval_id", "id"):
            lines.append(f"Approval: {approval}")
        if tool := _first(data, "tool", "tool_name"):
            lines.append(f"Tool: {tool}")
        arguments = data.get("arguments", data.get("tool_input"))
        if arguments:
            lines.append(f"Arguments: {_excerpt(redact(arguments))}")
        return f"Approval needed: {_excerpt(what or 'a decision is pending')}", lines

    if family == "schedule" and action in ("fired", "skipped"):
        schedule = _first(data, "schedule_name", "name", "schedule_id") or "?"
        lines = _context_lines(event, skip="")
        if action == "skipped" and (reason := data.get("reason")):
            lines.append(f"Reason: {_excerpt(reason)}")
        return f"Schedule {schedule} {verb}", lines

    if event_type == "destination.disabled":
        destination = _first(data, "destination_name", "name", "destination_id") or "?"
        lines = []
        if reason := _first(data, "reason", "last_error"):
            lines.append(f"Reason: {_excerpt(reason)}")
        return f"Destination {destination} disabled", lines

    subject = next((event[k] for k in _SUBJECT_KEYS if event.get(k)), None)
    return f"{event_type} — {subject if subject is not None else event_id_of(event)}", []


def _subject(event: Mapping[str, Any], data: Mapping[str, Any], key: str) -> str:
    return str(event.get(key) or data.get(key) or "?")


def _context_lines(event: Mapping[str, Any], *, skip: str) -> list[str]:
    labels = {"task_id": "Task", "execution_id": "Execution", "run_id": "Run", "job_id": "Job"}
    return [
        f"{label}: {event[key]}" for key, label in labels.items() if key != skip and event.get(key)
    ]


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    return next((data[k] for k in keys if data.get(k) not in (None, "")), None)


def _excerpt(value: Any, limit: int = EXCERPT_LIMIT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return truncate(" ".join(text.split()), limit)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_id_of(event: Mapping[str, Any]) -> str:
    """The event's id, which receivers deduplicate retried deliveries on."""
    event_id = event.get("id")
    if event_id is None or event_id == "":
        raise ValueError("the event has no id")
    return str(event_id)
