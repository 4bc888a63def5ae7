"""Provider-neutral types for talking to chat models."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]
ModelErrorCode = Literal["MODEL_UNAVAILABLE", "MODEL_TIMEOUT", "MODEL_ERROR", "MODEL_RATE_LIMITED"]
DeltaCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool invocation requested by the model.

    `arguments_error` is set, and `arguments` left empty, when the model sent arguments that
    are not a JSON object; the caller reports that back to the model instead of crashing.
    """

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    raw_arguments: str = "{}"
    arguments_error: str | None = None

    @classmethod
    def from_raw(cls, id: str, name: str, raw_arguments: str) -> ToolCall:
        raw = raw_arguments.strip() or "{}"
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            return cls(id, name, {}, raw_arguments, f"arguments are not valid JSON: {exc}")
        if not isinstance(parsed, dict):
            return cls(id, name, {}, raw_arguments, "arguments must be a JSON object")
        return cls(id, name, parsed, raw_arguments)

    @classmethod
    def create(cls, id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
        return cls(id, name, arguments, json.dumps(arguments))


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str, tool_calls: Sequence[ToolCall] = ()) -> ChatMessage:
        return cls("assistant", content, tuple(tool_calls))

    @classmethod
    def tool(cls, tool_call_id: str, content: str, name: str | None = None) -> ChatMessage:
        return cls("tool", content, tool_call_id=tool_call_id, name=name)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True, slots=True)
class ChatResult:
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = Usage()
    finish_reason: str | None = None
    model: str = ""


class ModelError(Exception):
    """A model call failed; `retryable` says whether the same call may succeed later."""

    def __init__(
        self,
        code: ModelErrorCode,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code: ModelErrorCode = code
        self.message = message
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"ModelError({self.code!r}, {self.message!r}, retryable={self.retryable})"


class ModelProvider(Protocol):
    name: str

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
        """Send the conversation; stream text deltas to `on_delta` when it is given."""
        ...


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_million: float
    output_per_million: float


@dataclass(frozen=True, slots=True)
class PriceTable:
    """USD prices per million tokens, keyed by model name.

    A model without an exact entry uses the longest entry its name starts with, so
    "gpt-4o" also prices "gpt-4o-2024-08-06"; an unknown model costs nothing.
    """

    prices: Mapping[str, ModelPrice] = field(default_factory=dict)

    def price_of(self, model: str) -> ModelPrice | None:
        if model in self.prices:
            return self.prices[model]
        prefixes = [name for name in self.prices if model.startswith(name)]
        return self.prices[max(prefixes, key=len)] if prefixes else None

    def cost(self, model: str, usage: Usage) -> float:
        price = self.price_of(model)
        if price is None:
            return 0.0
        return (
            usage.input_tokens * price.input_per_million
            + usage.output_tokens * price.output_per_million
        ) / 1_000_000
