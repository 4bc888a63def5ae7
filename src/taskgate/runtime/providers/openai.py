"""The OpenAI-compatible chat completions API (OpenAI, Ollama, vLLM, llama.cpp, LM Studio...)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from taskgate.runtime.providers.base import (
    ChatMessage,
    ChatResult,
    DeltaCallback,
    ModelError,
    ModelErrorCode,
    ToolCall,
    ToolSpec,
    Usage,
)

_ERROR_DETAIL_LIMIT = 500


class OpenAICompatibleProvider:
    """Calls POST {base_url}/chat/completions.

    `timeout_seconds` bounds each wait for the server (for the whole answer when not
    streaming, between chunks when streaming); `connect_timeout` bounds connecting.
    A client passed in is left open by `aclose()`; its own timeouts then apply.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        timeout_seconds: float = 120.0,
        connect_timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout)
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec] = (),
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> ChatResult:
        stream = on_delta is not None
        body = _request_body(messages, tools, model or self.model, temperature, max_tokens, stream)
        async with self._post("/chat/completions", body) as response:
            if on_delta is not None and _is_event_stream(response):
                return await _read_stream(response, on_delta)
            result = _parse_completion(await _read_json(response))
        if on_delta is not None and result.content:
            await on_delta(result.content)
        return result

    async def list_models(self) -> list[str]:
        try:
            response = await self._client.get(f"{self.base_url}/models", headers=self._headers)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        _raise_for_status(response)
        data = await _read_json(response)
        return [str(item["id"]) for item in data.get("data", []) if "id" in item]

    @asynccontextmanager
    async def _post(self, path: str, body: dict[str, Any]) -> AsyncIterator[httpx.Response]:
        request = self._client.build_request(
            "POST", f"{self.base_url}{path}", json=body, headers=self._headers
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc
        try:
            if response.status_code >= 400:
                await _read_body(response)
                _raise_for_status(response)
            yield response
        finally:
            await response.aclose()


def _request_body(
    messages: Sequence[ChatMessage],
    tools: Sequence[ToolSpec],
    model: str,
    temperature: float | None,
    max_tokens: int | None,
    stream: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [_wire_message(m) for m in messages]}
    if tools:
        body["tools"] = [_wire_tool(tool) for tool in tools]
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["content"] = message.content or None
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.raw_arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    if message.name is not None and message.role != "tool":
        wire["name"] = message.name
    return wire


def _wire_tool(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


def _new_call_id() -> str:
    """Some servers omit tool call ids, but the tool messages answering them need one."""
    return f"call_{uuid.uuid4().hex[:24]}"


def _parse_usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _parse_completion(data: dict[str, Any]) -> ChatResult:
    try:
        choice = data["choices"][0]
        message = choice["message"]
        calls = tuple(
            ToolCall.from_raw(
                call.get("id") or _new_call_id(),
                call["function"]["name"],
                call["function"].get("arguments") or "",
            )
            for call in message.get("tool_calls") or ()
        )
        return ChatResult(
            content=message.get("content") or "",
            tool_calls=calls,
            usage=_parse_usage(data.get("usage")),
            finish_reason=choice.get("finish_reason"),
            model=str(data.get("model") or ""),
        )
    except (KeyError, IndexError, TypeError) as exc:
        raise _bad_response(f"unexpected completion shape ({exc!r})") from exc


@dataclass
class _PendingToolCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _StreamState:
    """What a stream has said so far; tool calls arrive as fragments keyed by index."""

    content: list[str] = field(default_factory=list)
    calls: dict[int, _PendingToolCall] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    model: str = ""

    def add_tool_call_delta(self, delta: dict[str, Any]) -> None:
        pending = self.calls.setdefault(int(delta.get("index", 0)), _PendingToolCall())
        pending.id = delta.get("id") or pending.id
        function = delta.get("function") or {}
        pending.name = function.get("name") or pending.name
        pending.arguments.append(function.get("arguments") or "")

    def result(self) -> ChatResult:
        calls = tuple(
            ToolCall.from_raw(call.id or _new_call_id(), call.name, "".join(call.arguments))
            for _, call in sorted(self.calls.items())
        )
        return ChatResult("".join(self.content), calls, self.usage, self.finish_reason, self.model)


def _is_event_stream(response: httpx.Response) -> bool:
    content_type: str = response.headers.get("content-type", "")
    return content_type.startswith("text/event-stream")


async def _read_stream(response: httpx.Response, on_delta: DeltaCallback) -> ChatResult:
    state = _StreamState()
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            await _apply_chunk(state, _decode_chunk(data), on_delta)
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from exc
    return state.result()


def _decode_chunk(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as exc:
        raise _bad_response(f"invalid stream chunk {data[:100]!r}") from exc
    if not isinstance(chunk, dict):
        raise _bad_response(f"invalid stream chunk {data[:100]!r}")
    if "error" in chunk:
        raise ModelError(
            "MODEL_ERROR", f"model stream failed: {_error_detail(chunk)}", retryable=True
        )
    return chunk


async def _apply_chunk(state: _StreamState, chunk: dict[str, Any], on_delta: DeltaCallback) -> None:
    state.model = chunk.get("model") or state.model
    if chunk.get("usage"):
        state.usage = _parse_usage(chunk["usage"])
    for choice in chunk.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        state.finish_reason = choice.get("finish_reason") or state.finish_reason
        delta = choice.get("delta") or {}
        for call in delta.get("tool_calls") or ():
            state.add_tool_call_delta(call)
        if text := delta.get("content"):
            state.content.append(text)
            await on_delta(text)


async def _read_body(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.HTTPError as exc:
        raise _transport_error(exc) from exc


async def _read_json(response: httpx.Response) -> dict[str, Any]:
    raw = await _read_body(response)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad_response(f"response is not JSON: {raw[:100]!r}") from exc
    if not isinstance(data, dict):
        raise _bad_response("response is not a JSON object")
    return data


_STATUS_ERRORS: dict[int, tuple[ModelErrorCode, bool, str]] = {
    401: ("MODEL_UNAVAILABLE", False, "rejected the credentials (check the API key)"),
    403: ("MODEL_UNAVAILABLE", False, "rejected the credentials (check the API key)"),
    404: ("MODEL_UNAVAILABLE", False, "does not know this model or endpoint"),
    429: ("MODEL_RATE_LIMITED", True, "is rate limiting requests"),
    503: ("MODEL_UNAVAILABLE", True, "is unavailable"),
}


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    fallback: tuple[ModelErrorCode, bool, str] = (
        ("MODEL_ERROR", True, "failed") if status >= 500 else ("MODEL_ERROR", False, "refused")
    )
    code, retryable, what = _STATUS_ERRORS.get(status, fallback)
    detail = _error_detail(_safe_json(response))
    raise ModelError(
        code,
        f"model server at {response.request.url} {what} (HTTP {status}): {detail}",
        retryable=retryable,
        status_code=status,
        retry_after=_retry_after(response),
    )


def _transport_error(exc: httpx.HTTPError) -> ModelError:
    if isinstance(exc, httpx.TimeoutException):
        return ModelError(
            "MODEL_TIMEOUT",
            f"model server did not answer in time ({type(exc).__name__})",
            retryable=True,
        )
    return ModelError(
        "MODEL_UNAVAILABLE",
        f"cannot reach the model server: {type(exc).__name__}: {exc}",
        retryable=True,
    )


def _bad_response(detail: str) -> ModelError:
    return ModelError("MODEL_ERROR", f"model server sent a bad response: {detail}", retryable=False)


def _safe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_detail(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_ERROR_DETAIL_LIMIT]
        if isinstance(error, str):
            return error[:_ERROR_DETAIL_LIMIT]
    text = body if isinstance(body, str) else json.dumps(body)
    return text[:_ERROR_DETAIL_LIMIT] or "no details"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
