"""Running one node: render its config, do its work, say how it ended.

The stateless node types (``log``, ``http.request``, ``llm.prompt``, ``condition``,
``transform``, ``notify``) run here from start to end. The ones that wait (``task``,
``delay``, ``approval``) keep state in their step row; the executor drives them, using
``render_config`` from here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import structlog
from pydantic import ValidationError

from taskgate.clock import isoformat, utcnow
from taskgate.destinations import repository as destinations_repo
from taskgate.destinations.sealing import open_secret
from taskgate.destinations.sending import send
from taskgate.outbound.guarded_http import fetch_limited
from taskgate.outbound.secretbox import SecretBoxError
from taskgate.outbound.ssrf import BlockedURLError
from taskgate.runtime.context import Runtime
from taskgate.runtime.providers import ChatMessage, ModelError
from taskgate.workflows.definitions.graph import Node
from taskgate.workflows.definitions.node_types import validate_config
from taskgate.workflows.definitions.templating import (
    TemplateError,
    evaluate_condition,
    render_value,
)

log = structlog.get_logger()
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class NodeFailure(Exception):
    """The node failed; ``retryable`` says whether another attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass
class NodeResult:
    output: Any
    input_data: Any = None
    condition: bool | None = None


@dataclass
class Wait:
    """Run the step job again at ``run_after``; the step shows ``status`` meanwhile."""

    run_after: datetime
    status: str
    wake_at: datetime | None = None


@dataclass
class Park:
    """Nothing to do until something else (a decision) enqueues the step again."""


@dataclass
class StartTask:
    config: dict[str, Any]


@dataclass
class AskApproval:
    config: dict[str, Any]


@dataclass
class StepContext:
    """What one step sees: the runtime, the owner, and the template context."""

    runtime: Runtime
    owner_id: uuid.UUID
    execution_id: uuid.UUID
    workflow_id: uuid.UUID
    step_id: uuid.UUID
    node: Node
    template: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)
    # The execution's project: the only one whose resources (destinations) a step may use.
    project_id: uuid.UUID | None = None


def render_config(node: Node, template: Mapping[str, Any]) -> dict[str, Any]:
    """The node's config rendered with ``template`` and validated again.

    A template that fails (unsafe, undefined, over a limit) or a rendered value that breaks
    the node's schema is a ``NodeFailure`` that no retry will fix.
    """
    try:
        rendered = render_value(dict(node.config), template)
    except TemplateError as exc:
        where = f"config.{exc.path}: " if exc.path else ""
        raise NodeFailure(f"template error in {where}{exc.message}") from exc
    try:
        return validate_config(node.type, rendered)
    except ValidationError as exc:
        # "{{ steps.x.output.count }}" keeps its number; where text is wanted, it is text.
        if _texts_wanted(rendered, exc):
            return render_config_as_text(node, rendered, exc)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise NodeFailure(f"the rendered config is not valid: {problems}") from exc


def _texts_wanted(rendered: dict[str, Any], exc: ValidationError) -> bool:
    return any(error["type"] == "string_type" for error in exc.errors(include_url=False))


def render_config_as_text(
    node: Node, rendered: dict[str, Any], exc: ValidationError
) -> dict[str, Any]:
    fixed = json.loads(json.dumps(rendered))
    for error in exc.errors(include_url=False):
        if error["type"] != "string_type":
            continue
        *parents, last = error["loc"]
        holder: Any = fixed
        try:
            for part in parents:
                holder = holder[part]
            value = holder[last]
        except (KeyError, IndexError, TypeError):
            continue  # a location pydantic named but the data does not have (an alias)
        holder[last] = value if isinstance(value, str) else json.dumps(value)
    try:
        return validate_config(node.type, fixed)
    except ValidationError as again:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}"
            for error in again.errors(include_url=False)
        )
        raise NodeFailure(f"the rendered config is not valid: {problems}") from again


async def run_stateless(step: StepContext) -> NodeResult:
    node_type = step.node.type
    if node_type == "condition":
        expression = str(step.node.config["expression"])
        try:
            # Rendering is CPU work: off the event loop, so leases keep heartbeating.
            result = await asyncio.to_thread(evaluate_condition, expression, step.template)
        except TemplateError as exc:
            raise NodeFailure(f"condition error: {exc.message}") from exc
        return NodeResult({"result": result}, {"expression": expression}, condition=result)
    config = await asyncio.to_thread(render_config, step.node, step.template)
    if node_type == "log":
        log.info(
            "workflow_log",
            execution_id=str(step.execution_id),
            node=step.node.id,
            level=config["level"],
        )
        return NodeResult({"message": config["message"], "level": config["level"]}, config)
    if node_type == "transform":
        return NodeResult(config["template"], config)
    if node_type == "http.request":
        return NodeResult(await _http_request(step.runtime, config), config)
    if node_type == "llm.prompt":
        return NodeResult(await _llm_prompt(step.runtime, config), config)
    if node_type == "notify":
        return NodeResult(await _notify(step, config), config)
    raise NodeFailure(f"node type {node_type!r} cannot run here")


async def _http_request(runtime: Runtime, config: dict[str, Any]) -> dict[str, Any]:
    timeout = float(config["timeout_seconds"])
    kwargs: dict[str, Any] = {"headers": config["headers"], "timeout": timeout}
    if config.get("json") is not None:
        kwargs["json"] = config["json"]
    elif isinstance(config.get("body"), str):
        kwargs["content"] = config["body"].encode()
    elif config.get("body") is not None:
        kwargs["json"] = config["body"]
    host = httpx.URL(config["url"]).host
    try:
        response = await fetch_limited(
            runtime.services.workflow_client,
            config["method"],
            config["url"],
            total_timeout=timeout,
            **kwargs,
        )
    except BlockedURLError as exc:
        raise NodeFailure(f"outbound URL refused ({host}): {exc.reason}") from exc
    except httpx.TimeoutException as exc:
        raise NodeFailure(f"HTTP request to {host} timed out", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise NodeFailure(
            f"HTTP request to {host} failed: {type(exc).__name__}", retryable=True
        ) from exc
    output = {
        "status_code": response.status_code,
        "headers": {k: v for k, v in response.headers.items() if k.lower() != "set-cookie"},
        "body": _body_of(response.body, response.headers.get("content-type", "")),
        "truncated": response.truncated,
        "elapsed_ms": response.elapsed_ms,
    }
    expected = config.get("expect_status")
    ok = response.status_code in expected if expected else response.is_success
    if not ok:
        retryable = response.status_code in _RETRYABLE_STATUS
        raise NodeFailure(f"HTTP {response.status_code} from {host}", retryable=retryable)
    return output


def _body_of(raw: bytes, content_type: str) -> Any:
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type.lower():
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


async def _llm_prompt(runtime: Runtime, config: dict[str, Any]) -> dict[str, Any]:
    provider = runtime.services.model
    if provider is None:
        raise NodeFailure(
            "MODEL_UNAVAILABLE: no model provider is configured (set TASKGATE_MODEL__BASE_URL)"
        )
    messages = [ChatMessage.user(config["prompt"])]
    if config.get("system"):
        messages.insert(0, ChatMessage.system(config["system"]))
    try:
        result = await provider.chat(
            messages,
            model=config.get("model"),
            temperature=config.get("temperature"),
            max_tokens=config.get("max_tokens"),
        )
    except ModelError as exc:
        raise NodeFailure(f"{exc.code}: {exc.message}", retryable=exc.retryable) from exc
    return {
        "text": result.content,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "total_tokens": result.usage.total,
        },
    }


async def _notify(step: StepContext, config: dict[str, Any]) -> dict[str, Any]:
    try:
        destination_id = uuid.UUID(str(config["destination_id"]))
    except ValueError as exc:
        raise NodeFailure("destination_id is not a destination id") from exc
    runtime = step.runtime
    async with runtime.db.transaction(write=False) as session:
        destination = await destinations_repo.destination_for(session, destination_id)
    if destination is None or destination.project_id != step.project_id:
        raise NodeFailure(f"destination {destination_id} not found")
    if not destination.is_active:
        raise NodeFailure(f"destination {destination.name!r} is disabled")
    try:
        secret = open_secret(runtime.services.secret_box, destination)
    except SecretBoxError as exc:
        raise NodeFailure("the destination's secret cannot be opened") from exc
    message = config.get("message") or f"Workflow step {step.node.id} notifies you."
    document = {
        # The same id on every attempt, so receivers can drop a retried duplicate.
        "id": f"{step.execution_id}:{step.node.id}",
        "type": "workflow.notify",
        "created_at": isoformat(utcnow()),
        "execution_id": str(step.execution_id),
        "workflow_id": str(step.workflow_id),
        "payload": {"message": message, "node_key": step.node.id},
    }
    outcome = await send(
        runtime.services.workflow_client,
        destination,
        secret,
        document,
        timeout=runtime.settings.delivery.request_timeout_seconds,
    )
    if not outcome.success:
        raise NodeFailure(f"notification failed: {outcome.error}", retryable=not outcome.permanent)
    return {
        "destination_id": str(destination.id),
        "delivered": True,
        "status_code": outcome.status_code,
        "message": message,
    }
