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

from taskgate.outbound.event_text import describe_event, event_id_of, truncate
from taskgate.outbound.signing import SignatureError, decode_secret, standard_headers

DestinationType = Literal["webhook", "slack", "discord", "mattermost", "matrix"]
DESTINATION_TYPES: tuple[str, ...] = get_args(DestinationType)

DISCORD_CONTENT_LIMIT = 2000
SLACK_SECTION_LIMIT = 3000
MATTERMOST_TEXT_LIMIT = 16383

_OPTIONAL_FIELDS: dict[str, frozenset[str]] = {
    "webhook": frozenset(),
    "slack": frozenset({"channel", "username", "icon_url", "icon_emoji", "blocks"}),
    "mattermost": frozenset({"channel", "username", "icon_url", "icon_emoji"}),
    "discord": frozenset({"username", "avatar_url"}),
    "matrix": frozenset({"msgtype"}),
}
_MATRIX_MSGTYPES = ("m.text", "m.notice")


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
    msg_id = event_id_of(event)
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
    title, lines = describe_event(event)
    text = "\n".join([f"*{_slack_escape(title)}*", *(_slack_escape(line) for line in lines)])
    payload: dict[str, Any] = {"text": text}
    if config.get("blocks", True):
        context = f"`{_slack_escape(str(event.get('type', '')))}` · event {event_id_of(event)}"
        payload["blocks"] = [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": truncate(text, SLACK_SECTION_LIMIT)},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ]
    payload.update(_presentation(config, ("channel", "username", "icon_url", "icon_emoji")))
    return _chat_request(secret, payload)


def _mattermost(
    config: Mapping[str, Any], secret: str, event: Mapping[str, Any], now: int
) -> OutboundRequest:
    title, lines = describe_event(event)
    text = _defuse_mentions("\n".join([f"**{title}**", *lines]))
    payload: dict[str, Any] = {"text": truncate(text, MATTERMOST_TEXT_LIMIT)}
    payload.update(_presentation(config, ("channel", "username", "icon_url", "icon_emoji")))
    return _chat_request(secret, payload)


def _discord(
    config: Mapping[str, Any], secret: str, event: Mapping[str, Any], now: int
) -> OutboundRequest:
    title, lines = describe_event(event)
    content = "\n".join([f"**{title}**", *lines])
    payload: dict[str, Any] = {
        "content": truncate(content, DISCORD_CONTENT_LIMIT),
        "allowed_mentions": {"parse": []},
    }
    payload.update(_presentation(config, ("username", "avatar_url")))
    return _chat_request(secret, payload)


def _matrix(
    config: Mapping[str, Any], secret: str, event: Mapping[str, Any], now: int
) -> OutboundRequest:
    title, lines = describe_event(event)
    homeserver = str(config["homeserver"]).strip().rstrip("/")
    room = quote(str(config["room_id"]), safe="")
    # The event id as transaction id makes a retried delivery idempotent on the homeserver.
    txn = quote(event_id_of(event), safe="")
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


def _slack_escape(text: str) -> str:
    # Escaping < and > also defuses <!channel>-style mentions smuggled into event text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MENTION = re.compile(r"@(all|channel|here)\b", re.IGNORECASE)


def _defuse_mentions(text: str) -> str:
    return _MENTION.sub(lambda m: "@\u200b" + m.group(1), text)


def _json(value: Any) -> bytes:
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, default=_json_default
    ).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
