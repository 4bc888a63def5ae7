"""The agent loop: a model works on a text task through tools until it gives a result.

The loop knows nothing of the database or the sandbox; it reaches them through an
`AgentHost`, which the task runner implements.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from taskgate.runtime.providers.base import (
    ChatMessage,
    ChatResult,
    ModelProvider,
    ToolCall,
    ToolSpec,
    Usage,
)

AgentStatus = Literal["completed", "max_iterations", "failed"]

MAX_TOOL_OUTPUT_CHARS = 16_000

DEFAULT_SYSTEM_PROMPT = (
    "You are the taskgate agent. Work on the user's task step by step with the tools you are "
    "given: run_commands runs shell commands in the task's sandbox, spawn_subtask hands a "
    "self-contained piece of work to a sub-agent, and finish reports the final result. "
    "When the task is done, call finish with the result, or answer with the result directly."
)

VERIFIER_PROMPT = (
    "You check whether the result of a task meets its acceptance criteria. Answer with only a "
    'JSON object of the form {"passed": true or false, "reason": "..."}; passed is true only '
    "if every criterion is met, and reason names the criteria that are not."
)

AGENT_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        "run_commands",
        "Run shell commands in the task's sandbox, in order, and return their output.",
        {
            "type": "object",
            "properties": {
                "commands": {"type": "array", "items": {"type": "string"}, "minItems": 1}
            },
            "required": ["commands"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        "spawn_subtask",
        "Start a sub-agent on a self-contained piece of work and return its result.",
        {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "What the sub-agent does"}},
            "required": ["query"],
            "additionalProperties": False,
        },
    ),
    ToolSpec(
        "finish",
        "Finish the task and report the final result to the user.",
        {
            "type": "object",
            "properties": {"result": {"type": "string", "description": "The final result"}},
            "required": ["result"],
            "additionalProperties": False,
        },
    ),
)
_TOOL_NAMES = ", ".join(tool.name for tool in AGENT_TOOLS)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    output: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ApprovalOutcome:
    approved: bool
    reason: str = ""


class AgentHost(Protocol):
    async def emit(self, event_type: str, payload: dict[str, Any]) -> None: ...

    async def checkpoint(self) -> None:
        """Called between steps; raises to stop the loop (pause, cancel)."""
        ...

    async def run_commands(self, commands: list[str]) -> ToolOutcome: ...

    async def spawn_subtask(self, query: str) -> ToolOutcome: ...

    async def request_approval(self, tool: str, arguments: dict[str, Any]) -> ApprovalOutcome:
        """Decide on a tool call flagged as needing approval; may raise to suspend the loop."""
        ...


@dataclass(frozen=True, slots=True)
class AgentConfig:
    model: str | None = None
    max_iterations: int = 10
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    temperature: float | None = None
    approval_required_tools: frozenset[str] = frozenset()
    stream: bool = True


@dataclass(frozen=True, slots=True)
class Verification:
    passed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """How a run ended.

    `status` is "failed" when the model gave an empty answer or the result did not pass
    verification (`error` says which). `transcript` holds this run's messages, from the
    user's query on, without the system prompt or the history passed in.
    """

    status: AgentStatus
    final_text: str
    iterations: int
    usage: Usage
    verification: Verification | None
    transcript: list[ChatMessage]
    model: str = ""
    error: str | None = None


class _BadToolCall(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _ToolResult:
    output: str
    is_error: bool = False
    finished_with: str | None = None


async def run_agent(
    provider: ModelProvider,
    host: AgentHost,
    config: AgentConfig,
    *,
    query: str,
    history: Sequence[ChatMessage] = (),
    acceptance_criteria: Sequence[str] | None = None,
) -> AgentOutcome:
    """Run the loop; a `ModelError` or anything the host raises propagates unchanged."""
    run = _AgentRun(provider, host, config, [*history, ChatMessage.user(query)])
    status, final_text = await run.work()
    verification = None
    error = None
    if status == "completed" and not final_text.strip():
        status, error = "failed", "the model returned an empty answer"
    elif status == "completed" and acceptance_criteria:
        verification = await run.verify(query, final_text, acceptance_criteria)
        if not verification.passed:
            status, error = "failed", f"acceptance criteria not met: {verification.reason}"
    return AgentOutcome(
        status,
        final_text,
        run.iterations,
        run.usage,
        verification,
        run.transcript,
        run.model,
        error,
    )


class _AgentRun:
    def __init__(
        self,
        provider: ModelProvider,
        host: AgentHost,
        config: AgentConfig,
        conversation: Sequence[ChatMessage],
    ) -> None:
        self.provider = provider
        self.host = host
        self.config = config
        self.messages = [ChatMessage.system(config.system_prompt), *conversation]
        self.iterations = 0
        self.usage = Usage()
        self.model = ""
        self._transcript_start = len(self.messages) - 1

    @property
    def transcript(self) -> list[ChatMessage]:
        return self.messages[self._transcript_start :]

    async def work(self) -> tuple[AgentStatus, str]:
        last_text = ""
        while self.iterations < self.config.max_iterations:
            await self.host.checkpoint()
            result = await self._call_model()
            self.messages.append(ChatMessage.assistant(result.content, result.tool_calls))
            if not result.tool_calls:
                return "completed", result.content
            last_text = result.content or last_text
            if result.content:
                await self._emit("agent.thinking", {"text": result.content})
            finished_with = await self._run_tools(result.tool_calls)
            if finished_with is not None:
                return "completed", finished_with
        return "max_iterations", last_text

    async def verify(self, query: str, result: str, criteria: Sequence[str]) -> Verification:
        await self.host.checkpoint()
        listed = "\n".join(f"{n}. {criterion}" for n, criterion in enumerate(criteria, 1))
        question = f"Task:\n{query}\n\nAcceptance criteria:\n{listed}\n\nResult:\n{result}"
        answer = await self.provider.chat(
            [ChatMessage.system(VERIFIER_PROMPT), ChatMessage.user(question)],
            model=self.config.model,
            temperature=self.config.temperature,
        )
        self.usage += answer.usage
        verification = _parse_verdict(answer.content)
        event = "passed" if verification.passed else "failed"
        await self.host.emit(
            f"agent.verification_{event}",
            {"reason": verification.reason, "criteria": list(criteria)},
        )
        return verification

    async def _call_model(self) -> ChatResult:
        self.iterations += 1
        await self._emit("agent.iteration", {"max_iterations": self.config.max_iterations})
        iteration = self.iterations

        async def on_delta(delta: str) -> None:
            await self.host.emit("task.output.delta", {"delta": delta, "iteration": iteration})

        result = await self.provider.chat(
            self.messages,
            tools=AGENT_TOOLS,
            model=self.config.model,
            temperature=self.config.temperature,
            on_delta=on_delta if self.config.stream else None,
        )
        self.usage += result.usage
        self.model = result.model or self.model
        if not self.config.stream and result.content:
            await on_delta(result.content)
        return result

    async def _run_tools(self, calls: Sequence[ToolCall]) -> str | None:
        finished_with: str | None = None
        for call in calls:
            if finished_with is not None:
                result = _ToolResult("Not run: the task was already finished.", is_error=True)
            else:
                await self.host.checkpoint()
                result = await self._run_tool(call)
                finished_with = result.finished_with
            output = _clip(result.output)
            self.messages.append(ChatMessage.tool(call.id, output, name=call.name))
            await self._emit(
                "agent.tool_result",
                {"id": call.id, "tool": call.name, "output": output, "is_error": result.is_error},
            )
        return finished_with

    async def _run_tool(self, call: ToolCall) -> _ToolResult:
        shown = call.raw_arguments if call.arguments_error else call.arguments
        await self._emit("agent.tool_call", {"id": call.id, "tool": call.name, "arguments": shown})
        try:
            action = self._prepare(call)
        except _BadToolCall as exc:
            return _ToolResult(f"Error: {exc}", is_error=True)
        if call.name in self.config.approval_required_tools:
            approval = await self.host.request_approval(call.name, call.arguments)
            if not approval.approved:
                why = f": {approval.reason}" if approval.reason else ""
                return _ToolResult(f"Error: this {call.name} call was not approved{why}", True)
        return await action()

    def _prepare(self, call: ToolCall) -> Callable[[], Awaitable[_ToolResult]]:
        """Check a call's arguments up front, so nobody approves a call that cannot run."""
        if call.arguments_error:
            raise _BadToolCall(f"invalid arguments for {call.name}: {call.arguments_error}")
        arguments = call.arguments
        try:
            if call.name == "run_commands":
                commands = _string_list(arguments, "commands")
                return lambda: _from_host(self.host.run_commands(commands))
            if call.name == "spawn_subtask":
                query = _string(arguments, "query")
                return lambda: _from_host(self.host.spawn_subtask(query))
            if call.name == "finish":
                result = _string(arguments, "result")
                return lambda: _finished(result)
        except _BadToolCall as exc:
            raise _BadToolCall(f"invalid arguments for {call.name}: {exc}") from None
        raise _BadToolCall(f"unknown tool {call.name!r}; use one of {_TOOL_NAMES}.")

    async def _emit(self, event_type: str, payload: dict[str, Any]) -> None:
        await self.host.emit(event_type, {"iteration": self.iterations, **payload})


async def _from_host(outcome: Awaitable[ToolOutcome]) -> _ToolResult:
    done = await outcome
    return _ToolResult(done.output, done.is_error)


async def _finished(result: str) -> _ToolResult:
    return _ToolResult("Result recorded; the task is finished.", finished_with=result)


def _string(arguments: dict[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _BadToolCall(f"{key!r} must be a non-empty string")
    return value


def _string_list(arguments: dict[str, Any], key: str) -> list[str]:
    value = arguments.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _BadToolCall(f"{key!r} must be a non-empty array of strings")
    return value


def _clip(output: str) -> str:
    """Keep a tool's output within the model's reach: its start and, mostly, its end."""
    if len(output) <= MAX_TOOL_OUTPUT_CHARS:
        return output
    head, tail = MAX_TOOL_OUTPUT_CHARS // 4, MAX_TOOL_OUTPUT_CHARS * 3 // 4
    omitted = len(output) - head - tail
    return f"{output[:head]}\n[... {omitted} characters omitted ...]\n{output[-tail:]}"


def _parse_verdict(answer: str) -> Verification:
    start, end = answer.find("{"), answer.rfind("}")
    try:
        data = json.loads(answer[start : end + 1]) if 0 <= start < end else None
    except json.JSONDecodeError:
        data = None
    passed = data.get("passed") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(passed, bool):
        return Verification(False, f"the verification answer was not understood: {answer[:200]!r}")
    reason = data.get("reason")
    return Verification(passed, reason if isinstance(reason, str) else "")
