"""How an event becomes an HTTP request for a destination: a webhook or a chat service.

Where each destination keeps its credential (the `secret`, sealed at rest, never returned):

- `webhook`: `destination_config.url` is the endpoint; the optional secret signs deliveries
  (Standard Webhooks headers).
- `slack`, `mattermost`, `discord`: the incoming-webhook URL *is* the credential (anyone who
  has it can post), so it is the secret; `destination_config` holds only presentation
  (`channel`, `username`, `icon_url`, ...).
- `matrix`: `destination_config.homeserver` and `room_id`; the secret is an access token.

Chat messages never notify a whole room: Discord mentions are disabled, Slack text is escaped,
Mattermost `@all`/`@channel`/`@here` are defused, Matrix messages declare no mentions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from html import escape as html_escape
from typing import Any, Literal, get_args
from urllib.parse import quote

import httpx

from taskgate.outbound.secretbox import redact
from taskgate.outbound.signing import SignatureError, decode_secret, standard_headers

DestinationType = Literal["webhook", "slack", "discord", "mattermost", "matrix"]
DESTINATION_TYPES: tuple[str, ...] = get_args(DestinationType)

DISCORD_CONTENT_LIMIT = 2000
SLACK_SECTION_LIMIT = 3000
MATTERMOST_TEXT_LIMIT = 16383
EXCERPT_LIMIT = 300

_OPTIONAL_FIELDS: dict[str, frozenset[str]] = {
    "webhook": frozenset(),
    "slack": frozenset({"channel", "username", "icon_url", "icon_emoji", "blocks"}),
    "mattermost": frozenset({"channel", "username", "icon_url", "icon_emoji"}),
    "discord": frozenset({"username", "avatar_url"}),
    "matrix": frozenset({"msgtype"}),
}
_MATRIX_MSGTYPES = ("m.text", "m.notice")
_SUBJECT_KEYS = ("task_id", "execution_id", "run_id", "job_id", "session_id")


@dataclass(frozen=True)
class OutboundRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


class DestinationConfigError(ValueError):
    """The destination cannot be delivered to as configured; `problems` lists why."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{field}: {message}" for field, message in problems))


def validate_config(
    destination_type: str, config: Mapping[str, Any], secret: str | None
) -> list[tuple[str, str]]:
    """Problems with a destination, as `(field, message)` pairs named as in the API body
    (`destination_config.<key>`, `secret`); empty when it is deliverable.

    Only the shape is checked here: whether a URL's host is allowed is `ssrf.check_url`'s.
    """
    if destination_type not in DESTINATION_TYPES:
        allowed = ", ".join(DESTINATION_TYPES)
        return [("destination_type", f"unknown destination type (one of: {allowed})")]
    problems: list[tuple[str, str]] = []
    checked: tuple[str, ...] = ()  # fields checked above; any other unlisted one is unknown
    if destination_type == "webhook":
        checked = ("url",)
        problems += _url_problems("destination_config.url", config.get("url"))
        if secret:
            try:
                decode_secret(secret)
            except SignatureError as exc:
                problems.append(("secret", str(exc)))
    elif destination_type == "matrix":
        checked = ("homeserver", "room_id")
        problems += _url_problems("destination_config.homeserver", config.get("homeserver"))
        room_id = config.get("room_id")
        if not isinstance(room_id, str) or not room_id.startswith("!") or ":" not in room_id:
            problems.append(("destination_config.room_id", "a room id such as !abc:example.org"))
        if not secret:
            problems.append(("secret", "the Matrix access token is required"))
        msgtype = config.get("msgtype", "m.text")
        if msgtype not in _MATRIX_MSGTYPES:
            problems.append(("destination_config.msgtype", "m.text or m.notice"))
    else:
        if "url" in config:
            problems.append(
                (
                    "destination_config.url",
                    "an incoming-webhook URL is a credential: send it as `secret`",
                )
            )
        if not secret:
            problems.append(("secret", "the incoming-webhook URL is required"))
        else:
            problems += _url_problems("secret", secret, allow_userinfo=True)
        for key in _OPTIONAL_FIELDS[destination_type]:
            expected = bool if key == "blocks" else str
            if key in config and not isinstance(config[key], expected):
                problems.append((f"destination_config.{key}", f"must be a {expected.__name__}"))
        checked = ("url",)

    known = _OPTIONAL_FIELDS[destination_type] | set(checked)
    problems += [(f"destination_config.{k}", "unknown field") for k in config if k not in known]
    return problems


def _url_problems(field: str, value: Any, *, allow_userinfo: bool = False) -> list[tuple[str, str]]:
    if not isinstance(value, str) or not value.strip():
        return [(field, "a URL is required")]
    try:
        url = httpx.URL(value.strip())
    except httpx.InvalidURL:
        return [(field, "not a valid URL")]
    if url.scheme not in ("http", "https"):
        return [(field, "the URL must start with http:// or https://")]
    if not url.host:
        return [(field, "the URL has no host")]
    if url.userinfo and not allow_userinfo:
        return [(field, "credentials in the URL belong in `secret`")]
    return []


def build_delivery(
    destination_type: DestinationType,
    config: Mapping[str, Any],
    secret: str | None,
    event: Mapping[str, Any],
    *,
    now: int,
) -> OutboundRequest:
    """The request that delivers `event` to a destination. Raises `DestinationConfigError`."""
    problems = validate_config(destination_type, config, secret)
    if problems:
        raise DestinationConfigError(problems)
    builder = _BUILDERS[destination_type]
    return builder(config, secret or "", event, now)


def _webhook(
    config: Mapping[str, Any], secret: str, event: Mapping[str, Any], now: int
) -> OutboundRequest:
    body = _json(event)
    msg_id = _event_id(event)
    # Id and timestamp go out unsigned too: receivers deduplicate retries on webhook-id.
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
    }
    if secret:
        headers.update(standard_headers(secret, msg_id, body, now))
    return OutboundRequest("POST", str(config["url"]).strip(), headers, body)


def _slack(
    config: Mapping[str, Any], secret: str, event: Mapping[str, Any], now: int
) -> OutboundRequest:
    title, lines = _render(event)
    text = "\n".join([f"*{_slack_escape(title)}*", *(_slack_escape(line) for line in lines)])
    payload: dict[str, Any] = {"text": text}
    if config.get("blocks", True):
        context = f"`{_slack_escape(str(event.get('type', '')))}` · event {_event_id(event)}"
        payload["blocks"] = [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _truncate(text, SLACK_SECTION_LIMIT)},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ]
    payload.update(_presentation(config, ("channel", "username", "icon_url", "icon_emoji")))
    return _chat_request(secret, payload)


def _mattermost(
    config: Mapping[str, Any], secret: str, event: Mapping[str, Any], now: int
) -> OutboundRequest:
    title, lines = _render(event)
    text = _defuse_mentions("\n".join([f"**{title}**", *lines]))
    payload: dict[str, Any] = {"text": _truncate(text, MATTERMOST_TEXT_LIMIT)}
    payload.update(_presentation(config, ("channel", "username", "icon_url", "icon_emoji")))
    return _chat_request(secret, payload)


def _discord(
    config: Mapping[str, Any], secret: str, event: Mapping[str, Any], now: int
) -> OutboundRequest:
    title, lines = _render(event)
    content = "\n".join([f"**{title}**", *lines])
    payload: dict[str, Any] = {
        "content": _truncate(content, DISCORD_CONTENT_LIMIT),
        "allowed_mentions": {"parse": []},
    }
    payload.update(_presentation(config, ("username", "avatar_url")))
    return _chat_request(secret, payload)


def _matrix(
    config: Mapping[str, Any], secret: str, event: Mapping[str, Any], now: int
) -> OutboundRequest:
    title, lines = _render(event)
    homeserver = str(config["homeserver"]).strip().rstrip("/")
    room = quote(str(config["room_id"]), safe="")
    # The event id as transaction id makes a retried delivery idempotent on the homeserver.
    txn = quote(_event_id(event), safe="")
    url = f"{homeserver}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
    html = "<br>".join([f"<strong>{html_escape(title)}</strong>", *map(html_escape, lines)])
    body = {
        "msgtype": config.get("msgtype", "m.text"),
        "body": "\n".join([title, *lines]),
        "format": "org.matrix.custom.html",
        "formatted_body": html,
        "m.mentions": {},
    }
    headers = {"content-type": "application/json", "authorization": f"Bearer {secret.strip()}"}
    return OutboundRequest("PUT", url, headers, _json(body))


_Builder = Callable[[Mapping[str, Any], str, Mapping[str, Any], int], OutboundRequest]
_BUILDERS: dict[str, _Builder] = {
    "webhook": _webhook,
    "slack": _slack,
    "mattermost": _mattermost,
    "discord": _discord,
    "matrix": _matrix,
}


def _chat_request(hook_url: str, payload: Mapping[str, Any]) -> OutboundRequest:
    return OutboundRequest(
        "POST", hook_url.strip(), {"content-type": "application/json"}, _json(payload)
    )


def _presentation(config: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    return {key: config[key] for key in keys if config.get(key)}


def render_text(event: Mapping[str, Any]) -> str:
    """A short, readable plain-text account of an event, for people in a chat room."""
    title, lines = _render(event)
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


def _render(event: Mapping[str, Any]) -> tuple[str, list[str]]:
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
    return f"{event_type} — {subject if subject is not None else _event_id(event)}", []


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
    return _truncate(" ".join(text.split()), limit)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    # Escaping < and > also defuses <!channel>-style mentions smuggled into event text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MENTION = re.compile(r"@(all|channel|here)\b", re.IGNORECASE)


def _defuse_mentions(text: str) -> str:
    return _MENTION.sub(lambda m: "@\u200b" + m.group(1), text)


def _event_id(event: Mapping[str, Any]) -> str:
    event_id = event.get("id")
    if event_id is None or event_id == "":
        raise ValueError("the event has no id")
    return str(event_id)


def _json(value: Any) -> bytes:
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
