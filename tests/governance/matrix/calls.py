"""Making one call of the matrix and reading its outcome class: HTTP, an SSE stream (read
to its headers) or a WebSocket channel (subscribed, or refused)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.governance.matrix.rules import Who, outcome
from tests.governance.matrix.world import VISITOR_PASSWORD, WEBHOOK_SECRET, World
from tests.support.clients import login

_WS_CLOSE = {4401: "401", 4403: "403", 4404: "404"}


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    content: bytes | None = None
    query: Mapping[str, str] | None = None
    kind: str = "http"
    shows: str | None = None  # an id the answer must mention when it is a 2xx


@dataclass
class Answer:
    outcome: str
    said: str  # what the response said, for the failure message


def fill(template: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], template)


async def perform(world: World, call: Call, ws_url: str) -> Answer:
    if call.kind == "ws":
        return await _websocket(world, call, ws_url)
    if call.kind == "sse":
        async with world.client.stream(
            "GET", call.path, headers=call.headers, params=call.query
        ) as response:
            said = "" if response.is_success else (await response.aread()).decode()[:300]
            return Answer(outcome(response.status_code), said)
    response = await world.client.request(
        call.method,
        call.path,
        headers=call.headers,
        json=call.json,
        content=call.content,
        params=call.query,
    )
    said = response.text
    if call.shows is not None and response.is_success and call.shows not in said:
        return Answer("2xx without it", f"the page does not show {call.shows}")
    return Answer(outcome(response.status_code), said[:300])


async def _websocket(world: World, call: Call, ws_url: str) -> Answer:
    """Connect, subscribe to the shared task's channel: subscribed is a 2xx; a close code or
    an error frame is the refusal it names (someone else's subject reads as a missing one)."""
    channel = f"tasks:{world.shared['task_id']}"
    try:
        async with connect(ws_url + call.path, additional_headers=call.headers) as conn:
            await conn.send(json.dumps({"action": "subscribe", "channel": channel}))
            frame = json.loads(await asyncio.wait_for(conn.recv(), 10))
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
        reason = closed.rcvd.reason if closed.rcvd else ""
        return Answer(_WS_CLOSE.get(code or 0, f"close {code}"), reason)
    except InvalidStatus as refused:
        return Answer(outcome(refused.response.status_code), "refused the upgrade")
    if frame.get("type") == "subscribed":
        return Answer("2xx", "")
    message = str(frame.get("message", frame))
    denied = "scope" in message or "Not allowed" in message
    return Answer("403" if denied else "404", message)


# Requests whose parts depend on each other -----------------------------------------------


def _as(world: World, who: Who, method: str, path: str, **kw: Any) -> Call:
    return Call(method, path, world.credentials(who), **kw)


async def visitor_credentials(world: World, who: Who) -> dict[str, Any]:
    return {"username": "visitor", "password": VISITOR_PASSWORD}


async def refresh(world: World, who: Who) -> dict[str, Any]:
    return {"refresh": (await world.visitor_login()).refresh}


async def logout(world: World, who: Who) -> dict[str, Any]:
    """A refresh token of the caller's own (a second sign-in), so that signing out ends that
    session only and the caller's credentials keep working for the rest of the matrix."""
    user = world.user_of(who)
    if user is None:
        return {}
    return {"refresh": (await login(world.client, user.username, user.password)).refresh}


async def new_user(world: World, who: Who) -> dict[str, Any]:
    return {"username": world.name("newcomer"), "password": "pw-newcomer-123"}


async def new_rule(world: World, who: Who) -> dict[str, Any]:
    """A rule that changes nothing the matrix asks: it names a user nobody calls as."""
    return world.rule_body(await world.user())


async def new_binding(world: World, who: Who) -> dict[str, Any]:
    return {"subject_type": "user", "subject_id": await world.user(), "role": "viewer"}


async def subscription_body(world: World, who: Who) -> dict[str, Any]:
    return {"destination_id": world.shared["destination_id"], "event_pattern": "run.*"}


async def new_member(world: World, who: Who, method: str, template: str) -> Call:
    path = fill(template, {"group_id": world.shared["group_id"]})
    return _as(world, who, method, path, json={"user_id": await world.user()})


async def member_removal(world: World, who: Who, method: str, template: str) -> Call:
    group_id, user_id = await world.member_of_group()
    return _as(world, who, method, fill(template, {"group_id": group_id, "user_id": user_id}))


async def approval_in_body(world: World, who: Who, method: str, template: str) -> Call:
    approval_id, task_id = await world.approval_task()
    body = {"workflow_id": task_id, "approval_id": approval_id, "approved": True}
    return _as(world, who, method, template, json=body)


async def signed_webhook(world: World, who: Who, method: str, template: str) -> Call:
    """A delivery signed with the source's secret: accepted whoever sends it."""
    content = json.dumps({"type": "matrix.hook", "nonce": uuid.uuid4().hex}).encode()
    digest = hmac.new(WEBHOOK_SECRET.encode(), content, hashlib.sha256).hexdigest()
    headers = {
        **world.credentials(who),
        "Content-Type": "application/json",
        "X-Webhook-Signature": f"sha256={digest}",
    }
    path = fill(template, {"source": world.shared["source_id"]})
    return Call(method, path, headers, content=content)
