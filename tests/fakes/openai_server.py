"""A loopback HTTP server speaking the OpenAI chat completions protocol, for tests.

It runs uvicorn in a background thread with its own event loop, so both async tests in this
process and subprocesses under test (given `base_url`) can call it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FakeToolCall = tuple[str, dict[str, Any] | str]

ARGUMENT_FRAGMENTS = 3


@dataclass(frozen=True)
class ScriptedReply:
    """One queued answer. A string in `tool_calls` is sent verbatim as the arguments."""

    text: str | None = None
    tool_calls: tuple[FakeToolCall, ...] = ()
    usage: tuple[int, int] | None = None
    delay: float = 0.0
    status: int = 200
    error_body: dict[str, Any] | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    arguments: str


@dataclass
class _Answer:
    model: str
    text: str | None
    calls: list[_Call]
    usage: tuple[int, int]
    finish_reason: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))


class FakeOpenAI:
    """Answers chat completions with scripted replies, in the order they were added.

    With no reply queued it answers `default_text`. A request that breaks the protocol (no
    model, a tool message without the tool call it answers...) gets the 400 OpenAI would send,
    without using up a reply. Usage not scripted is estimated from word counts.
    """

    def __init__(
        self, *, api_key: str | None = None, default_text: str = "Done.", model: str = "fake-model"
    ) -> None:
        self.api_key = api_key
        self.default_text = default_text
        self.model = model
        self._lock = threading.Lock()
        self._replies: deque[ScriptedReply] = deque()
        self._requests: list[dict[str, Any]] = []
        self._closing = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    @property
    def base_url(self) -> str:
        if not self._port:
            raise RuntimeError("FakeOpenAI is not started")
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies received on /chat/completions, oldest first."""
        with self._lock:
            return list(self._requests)

    def add_reply(
        self,
        *,
        text: str | None = None,
        tool_calls: Sequence[FakeToolCall] = (),
        usage: tuple[int, int] | None = None,
        delay: float = 0.0,
        status: int = 200,
        error_body: dict[str, Any] | None = None,
        finish_reason: str | None = None,
    ) -> None:
        reply = ScriptedReply(
            text, tuple(tool_calls), usage, delay, status, error_body, finish_reason
        )
        with self._lock:
            self._replies.append(reply)

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self._requests.clear()

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        # Listening before uvicorn starts queues early connections, so no readiness wait.
        sock.listen(128)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_config=None, access_log=False, http="h11", ws="none", loop="asyncio"
        )
        self._closing.clear()
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-openai", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._closing.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOpenAI:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    async def _chat_completions(self, request: Request) -> Response:
        if denied := self._check_auth(request):
            return denied
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict):
            return _error(400, "The request body must be a JSON object.")
        with self._lock:
            self._requests.append(body)
        if problem := _validate(body):
            return _error(400, problem)
        reply = self._next_reply()
        if reply.delay:
            # Returns early when the server stops, so shutdown never waits on a slow reply.
            await asyncio.to_thread(self._closing.wait, reply.delay)
        if reply.status != 200:
            return JSONResponse(
                reply.error_body or _error_body(f"Scripted failure {reply.status}", "server_error"),
                status_code=reply.status,
            )
        answer = _answer(body, reply)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _sse(_chunks(answer, include_usage)), media_type="text/event-stream"
            )
        return JSONResponse(_completion(answer))

    async def _models(self, request: Request) -> Response:
        if denied := self._check_auth(request):
            return denied
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "taskgate-fake"}
        return JSONResponse({"object": "list", "data": [model]})

    def _check_auth(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        body = _error_body(
            "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
        )
        return JSONResponse(body, status_code=401)

    def _next_reply(self) -> ScriptedReply:
        with self._lock:
            return self._replies.popleft() if self._replies else ScriptedReply(self.default_text)


def _validate(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name") or tool["type"] != "function":
            return "each tool must be {'type': 'function', 'function': {'name': ...}}"
    return _validate_tool_turns(messages)


def _validate_tool_turns(messages: list[Any]) -> str | None:
    """Enforce the pairing OpenAI enforces between tool calls and tool messages."""
    unanswered: set[str] = set()
    for message in messages:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            return f"invalid message role {role!r}"
        if role == "tool":
            if message.get("tool_call_id") not in unanswered:
                return "messages with role 'tool' must be a response to a preceding 'tool_calls'"
            unanswered.discard(message["tool_call_id"])
            continue
        if unanswered:
            return _unanswered_error(unanswered)
        if role == "assistant":
            unanswered = {call.get("id") for call in message.get("tool_calls") or ()}
    return _unanswered_error(unanswered) if unanswered else None


def _unanswered_error(unanswered: set[str]) -> str:
    return (
        "an assistant message with 'tool_calls' must be followed by tool messages "
        f"responding to each 'tool_call_id'; missing {sorted(unanswered)}"
    )


def _answer(body: dict[str, Any], reply: ScriptedReply) -> _Answer:
    calls = [
        _Call(
            f"call_{uuid.uuid4().hex[:16]}",
            name,
            args if isinstance(args, str) else json.dumps(args),
        )
        for name, args in reply.tool_calls
    ]
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    usage = reply.usage or _estimate_usage(body, reply.text, calls)
    return _Answer(body["model"], reply.text, calls, usage, finish)


def _estimate_usage(body: dict[str, Any], text: str | None, calls: list[_Call]) -> tuple[int, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    completion = len((text or "").split()) + sum(len(c.arguments) // 4 + 1 for c in calls)
    return prompt + 1, completion


def _usage(answer: _Answer) -> dict[str, int]:
    prompt, completion = answer.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(answer: _Answer) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.calls:
        message["tool_calls"] = [_wire_call(call, call.arguments) for call in answer.calls]
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": _usage(answer),
    }


def _chunks(answer: _Answer, include_usage: bool) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _chunk(answer, [choice], include_usage)

    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in _words(answer.text or "")]
    for index, call in enumerate(answer.calls):
        chunks.append(chunk({"tool_calls": [{"index": index, **_wire_call(call, "")}]}))
        chunks += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
            for fragment in _fragments(call.arguments, ARGUMENT_FRAGMENTS)
        ]
    chunks.append(chunk({}, answer.finish_reason))
    if include_usage:
        chunks.append({**_chunk(answer, [], include_usage), "usage": _usage(answer)})
    return chunks


def _wire_call(call: _Call, arguments: str) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def _chunk(answer: _Answer, choices: list[dict[str, Any]], include_usage: bool) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": answer.id,
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": "fp_taskgate_fake",
        "choices": choices,
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def _words(text: str) -> list[str]:
    """Split text into word-sized pieces that concatenate back to it."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(f" {word}" if pieces else word)
    return [piece for piece in pieces if piece]


def _fragments(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(_error_body(message, "invalid_request_error"), status_code=status)
