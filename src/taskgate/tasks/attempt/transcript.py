"""An agent's conversation kept across attempts: recorded as the loop talks to the model,
stored on the run, and replayed so a paused or approval-bound agent carries on where it was."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskgate.runtime.providers import (
    ChatMessage,
    ChatResult,
    DeltaCallback,
    ModelProvider,
    PriceTable,
    ToolCall,
    ToolSpec,
    Usage,
)

RESUME_NOTE = "(The task was paused and has now been resumed. Carry on from where you stopped.)"


def to_wire(message: ChatMessage) -> dict[str, Any]:
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.raw_arguments} for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        wire["name"] = message.name
    return wire


def from_wire(wire: dict[str, Any]) -> ChatMessage:
    calls = tuple(
        ToolCall.from_raw(c["id"], c["name"], c.get("arguments") or "{}")
        for c in wire.get("tool_calls") or ()
    )
    return ChatMessage(
        wire["role"],
        wire.get("content") or "",
        calls,
        wire.get("tool_call_id"),
        wire.get("name"),
    )


class RecordingProvider:
    """Wraps the real provider: counts usage and cost over every call, keeps the conversation
    as of the latest step, and can answer the first step with a recorded reply (replay)."""

    def __init__(
        self,
        inner: ModelProvider,
        prices: PriceTable,
        start: Sequence[ChatMessage],
        replay: ChatResult | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.prices = prices
        self.usage = Usage()
        self.cost = 0.0
        self.model = ""
        self._start = list(start)
        self._sent: list[ChatMessage] | None = None
        self._reply: ChatMessage | None = None
        self._tool_messages: list[ChatMessage] = []
        self._replay = replay

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
        step = bool(tools)  # the verifier's question is no step of the conversation
        if step:
            self._sent = [m for m in messages if m.role != "system"]
            self._reply = None
            self._tool_messages = []
            if self._replay is not None:
                result, self._replay = self._replay, None
                self._reply = ChatMessage.assistant(result.content, result.tool_calls)
                return result
        result = await self.inner.chat(
            messages,
            tools=tools,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            on_delta=on_delta,
        )
        self.usage += result.usage
        self.model = result.model or self.model or (model or "")
        self.cost += self.prices.cost(result.model or model or "", result.usage)
        if step:
            self._reply = ChatMessage.assistant(result.content, result.tool_calls)
        return result

    def tool_result(self, call_id: str, tool: str, output: str) -> None:
        self._tool_messages.append(ChatMessage.tool(call_id, output, name=tool))

    def conversation(self) -> list[ChatMessage]:
        """Everything said so far, without the system prompt: what a later attempt resumes."""
        if self._sent is None:
            return list(self._start)
        if self._reply is None:
            return list(self._sent)
        return [*self._sent, self._reply, *self._tool_messages]

    def usage_record(self) -> dict[str, Any]:
        return {
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "total_tokens": self.usage.total,
            "cost_usd": round(self.cost, 8),
            "model": self.model,
        }


@dataclass(frozen=True)
class ResumePlan:
    """How to restart the loop from a saved conversation."""

    history: list[ChatMessage]
    query: str
    replay: ChatResult | None = None
    recorded: dict[str, str] = field(default_factory=dict)
    decision: dict[str, Any] | None = None


def plan_resume(saved: dict[str, Any]) -> ResumePlan:
    """A step cut short (tool calls without all their results) is replayed: the model's reply
    is given again without calling it, the calls that ran return their recorded output, and
    the rest run now (with the approval decision, when that is what they waited for)."""
    messages = [from_wire(m) for m in saved.get("messages") or ()]
    replay: ChatResult | None = None
    recorded: dict[str, str] = {}
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=None)
    if last is not None and messages[last].tool_calls:
        answers = {m.tool_call_id: m.content for m in messages[last + 1 :] if m.role == "tool"}
        if any(call.id not in answers for call in messages[last].tool_calls):
            step = messages[last]
            replay = ChatResult(step.content, step.tool_calls)
            recorded = {k: v for k, v in answers.items() if k is not None}
            messages = messages[:last]
    if messages and messages[-1].role == "user":
        history, query = messages[:-1], messages[-1].content
    else:
        history, query = messages, RESUME_NOTE
    return ResumePlan(history, query, replay, recorded, saved.get("decision"))
