"""Chat model providers behind one provider-neutral interface."""

from taskgate.runtime.providers.base import (
    ChatMessage,
    ChatResult,
    DeltaCallback,
    ModelError,
    ModelErrorCode,
    ModelPrice,
    ModelProvider,
    PriceTable,
    Role,
    ToolCall,
    ToolSpec,
    Usage,
)
from taskgate.runtime.providers.openai import OpenAICompatibleProvider

__all__ = [
    "ChatMessage",
    "ChatResult",
    "DeltaCallback",
    "ModelError",
    "ModelErrorCode",
    "ModelPrice",
    "ModelProvider",
    "OpenAICompatibleProvider",
    "PriceTable",
    "Role",
    "ToolCall",
    "ToolSpec",
    "Usage",
]
